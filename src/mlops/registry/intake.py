"""Checking a model file before it is registered: flavor, trust, signature. Writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlops.core.signature import Signature
from mlops.errors import UnreadableFile
from mlops.flavors import FLAVORS, Artifact, Flavors
from mlops.registry import signatures
from mlops.registry.artifacts import check_plain_folder
from mlops.registry.detection import check_flavor, detect_flavor, model_root


@dataclass(frozen=True)
class Inspected:
    path: Path
    """The file or folder to store."""
    flavor: str
    signature: Signature
    data: bytes | None
    """A single file's bytes, as checked: these are what gets stored."""


def inspect_artifact(
    path: Path,
    *,
    flavor: str | None,
    trusted: bool,
    sample: Path | None,
    flavors: Flavors = FLAVORS,
) -> Inspected:
    """Everything `register` must know about a file, or the first reason to refuse it."""
    root = model_root(path)
    if root.is_dir():
        check_plain_folder(root)  # before any file in it is read: a link may leave it
    found = check_flavor(path, flavor, flavors) if flavor else detect_flavor(path, flavors)
    sample_sig = signatures.from_sample(sample) if sample else None
    if root.is_dir():
        artifact = Artifact(str(path), trusted, folder=root)
    else:
        try:
            artifact = Artifact(str(path), trusted, data=root.read_bytes())
        except OSError as exc:
            raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None
    signature = flavors[found].signature(artifact, sample_sig)
    return Inspected(root, found, signature, artifact.data)
