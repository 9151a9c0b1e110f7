"""Which flavor a file is, told from its bytes (not its name)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from mlops.documents import NotADocument, load_yaml, read_bytes
from mlops.errors import UnreadableFile, WrongFlavor
from mlops.registry.params import MAX_BYTES, looks_like_params, parse_params

FLAVORS = ("sklearn", "skops", "onnx", "mlflow", "params")
RUNS_CODE_ON_LOAD = frozenset({"sklearn", "mlflow"})
"""Pickle-based flavors: loading them executes code from the file."""

_PICKLE_PROTOCOLS = {bytes([0x80, p]) for p in range(2, 6)}
_JOBLIB_COMPRESSED = (b"ZF", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18")


def model_root(path: Path) -> Path:
    """An MLflow model is a folder; accept the path of its MLmodel file too."""
    return path.parent if path.name == "MLmodel" and path.is_file() else path


def read_mlmodel(folder: Path) -> dict[str, object]:
    mlmodel = folder / "MLmodel"
    what = f"the MLmodel file {mlmodel}"
    try:
        data = load_yaml(read_bytes(mlmodel, what), what)
    except (UnreadableFile, NotADocument) as exc:
        raise WrongFlavor(f"{mlmodel} is not a readable MLmodel file: {exc.message}") from None
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise WrongFlavor(f"{mlmodel} has no 'flavors' section: not an MLflow model")
    if "python_function" not in data["flavors"]:
        raise WrongFlavor(f"{mlmodel} has no python_function flavor: mlops cannot serve it")
    return data


def _sniff_file(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise WrongFlavor(f"{path} is empty")
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                if "schema.json" in archive.namelist():
                    return "skops"
        except zipfile.BadZipFile:
            return None
        return None
    if head[:2] in _PICKLE_PROTOCOLS or head.startswith(_JOBLIB_COMPRESSED):
        return "sklearn"
    if head[0] == 0x08 and _is_onnx(path):
        return "onnx"
    if _is_params(path):
        return "params"
    return None


def _is_params(path: Path) -> bool:
    try:
        if path.stat().st_size > MAX_BYTES:
            return False
        return looks_like_params(path.read_bytes(), str(path))
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None


def _is_onnx(path: Path) -> bool:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError):
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def detect_flavor(path: Path) -> str:
    """The flavor of `path`, or WrongFlavor if it is none we know."""
    if not path.exists():
        raise UnreadableFile(f"{path} does not exist")
    root = model_root(path)
    if root.is_dir():
        if (root / "MLmodel").is_file():
            read_mlmodel(root)
            return "mlflow"
        raise WrongFlavor(f"{root} is a folder without an MLmodel file: not an MLflow model")
    flavor = _sniff_file(root)
    if flavor is None:
        raise WrongFlavor(
            f"{path} is not a model file mlops knows: expected a joblib/pickle (sklearn), skops, "
            "ONNX file, an MLflow model folder, or a params file (JSON or YAML with a "
            "threshold or labels)"
        )
    return flavor


def check_flavor(path: Path, flavor: str) -> str:
    """Check that `path` is of the `flavor` asked for; return it."""
    if flavor not in FLAVORS:
        raise WrongFlavor(f"unknown flavor {flavor!r}: choose one of {', '.join(FLAVORS)}")
    if flavor == "params" and path.is_file():
        parse_params(read_bytes(path, str(path)), str(path))
        return flavor
    found = detect_flavor(path)
    if found != flavor:
        raise WrongFlavor(f"{path} is a {found} artifact, not {flavor}")
    return flavor
