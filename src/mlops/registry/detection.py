"""Which flavor a path is, told from its bytes (not its name) by asking each flavor in turn."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import UnreadableFile, WrongFlavor
from mlops.flavors import FLAVORS, Flavors


def model_root(path: Path) -> Path:
    """An MLflow model is a folder; accept the path of its MLmodel file too."""
    return path.parent if path.name == "MLmodel" and path.is_file() else path


def detect_flavor(path: Path, flavors: Flavors = FLAVORS) -> str:
    """The flavor of `path`, or WrongFlavor if it is none we know."""
    if not path.exists():
        raise UnreadableFile(f"{path} does not exist")
    root = model_root(path)
    if root.is_file() and _is_empty(root):
        raise WrongFlavor(f"{root} is empty")
    for name, flavor in flavors.items():
        if flavor.detect(root):
            return name
    if root.is_dir():
        raise WrongFlavor(f"{root} is a folder that holds no model mlops knows")
    known = [flavor.expected for flavor in flavors.values()]
    listed = ", ".join(known[:-1]) + f", or {known[-1]}" if len(known) > 1 else "".join(known)
    raise WrongFlavor(f"{path} is not a model file mlops knows: expected {listed}")


def check_flavor(path: Path, flavor: str, flavors: Flavors = FLAVORS) -> str:
    """Check that `path` is of the `flavor` asked for; return it."""
    if flavor not in flavors:
        raise WrongFlavor(f"unknown flavor {flavor!r}: choose one of {', '.join(flavors)}")
    if path.exists() and flavors[flavor].detect(model_root(path), asked=True):
        return flavor
    found = detect_flavor(path, flavors)
    if found != flavor:
        raise WrongFlavor(f"{path} is a {found} artifact, not {flavor}")
    return flavor


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None
