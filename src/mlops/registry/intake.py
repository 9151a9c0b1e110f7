"""Checking a model file before it is registered: flavor, trust, signature. Writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlops.core.lookup import LookupSpec
from mlops.core.signature import Signature
from mlops.errors import InvalidInput, UnreadableFile
from mlops.registry import signatures
from mlops.registry.artifacts import check_plain_folder
from mlops.registry.flavors import check_flavor, detect_flavor, model_root, read_mlmodel
from mlops.registry.loaders import load_bytes, require_trust
from mlops.registry.params import Params


@dataclass(frozen=True)
class Inspected:
    path: Path
    """The file or folder to store."""
    flavor: str
    signature: Signature
    data: bytes | None
    """A single file's bytes, as checked: these are what gets stored."""


def inspect_artifact(
    path: Path, *, flavor: str | None, trusted: bool, sample: Path | None
) -> Inspected:
    """Everything `register` must know about a file, or the first reason to refuse it."""
    root = model_root(path)
    if root.is_dir():
        check_plain_folder(root)  # before any file in it is read: a link may leave it
    found = check_flavor(path, flavor) if flavor else detect_flavor(path)
    if found == "params" and sample is not None:
        raise InvalidInput(f"{path} is a params file: it takes no --sample")
    sample_sig = signatures.from_sample(sample) if sample else None
    what = str(path)
    if found == "mlflow":
        require_trust(found, trusted, what)
        declared = signatures.from_mlmodel(
            read_mlmodel(root), f"the MLmodel file {root / 'MLmodel'}"
        )
        return Inspected(root, found, signatures.merge_sample(declared, sample_sig, what), None)
    try:
        data = root.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None
    model = load_bytes(found, data, trusted=trusted, what=what)
    if isinstance(model, Params | LookupSpec):
        return Inspected(root, found, model.signature(), data)
    own = signatures.from_onnx(model) if found == "onnx" else signatures.from_estimator(model, what)
    signature = signatures.merge_sample(own, sample_sig, what)
    signatures.check_predicts(found, model, signature, what)
    return Inspected(root, found, signature, data)
