"""The flavor plug point: how a version's artifact is recognised, loaded, described and run.

A flavor knows one kind of artifact. `detect` tells it from a path at registration, `load`
turns the verified artifact into a model object, `signature` describes a version about to be
registered, and `predict` runs a loaded model on a batch of rows. A version served elsewhere
(a remote V2 server) fits the same shape: its artifact holds no model, `load` gives a client
and `predict` calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from mlops.core.signature import Signature
from mlops.errors import UnreadableFile, UntrustedArtifact, WrongFlavor

Stage = Literal["predict", "predict_proba", "transform"]
"""What a pipeline asks of a stage: its predictions, its class probabilities (for a threshold
that follows it), or its columns (a preprocessor)."""

TRUST_HINT = "pass --trust (or set MLOPS_TRUST=1) only if you trust where the file came from"


@dataclass(frozen=True)
class Artifact:
    """What a version is loaded from: a file's verified bytes, or a verified folder, or
    neither for a version served elsewhere (its `source` says where)."""

    what: str
    """How messages name it: the path given, or MODEL:VERSION."""
    trusted: bool
    """Whether it was registered with --trust: code in it may run."""
    data: bytes | None = None
    folder: Path | None = None
    source: str = ""


class ModelFlavor(Protocol):
    """One kind of artifact. Registered in a `Flavors` mapping under its `name`."""

    @property
    def name(self) -> str:
        """The flavor's name, as the registry records it."""
        ...

    @property
    def expected(self) -> str:
        """Its artifacts in a few words, for the message that lists what mlops can load."""
        ...

    def detect(self, path: Path, *, asked: bool = False) -> bool:
        """Whether `path` (a file or a folder) is an artifact of this flavor. A path that is
        of its kind but broken raises `WrongFlavor` with the reason; so may a path that is not
        one when the flavor was `asked` for by name (--flavor)."""
        ...

    def load(self, artifact: Artifact) -> Any:
        """The model object (or a client) of a verified artifact."""
        ...

    def signature(self, artifact: Artifact, sample: Signature | None) -> Signature:
        """The signature of a version being registered: the one the artifact declares, checked
        against the `sample` rows' (--sample) and by predicting on its example rows."""
        ...

    def predict(
        self, model: Any, rows: np.ndarray, stage: Stage, signature: Signature, label: str
    ) -> np.ndarray:
        """The outputs of a loaded `model` for a batch of `rows`, one per row. `label`
        (MODEL:VERSION) names the version in messages."""
        ...


Flavors = Mapping[str, ModelFlavor]
"""Flavors by name: what the registry loads and what the runtime runs."""


def require_trust(flavor: str, artifact: Artifact) -> None:
    if not artifact.trusted:
        raise UntrustedArtifact(
            f"{artifact.what} is a {flavor} artifact: loading it runs code from the file; "
            f"{TRUST_HINT}"
        )


def file_bytes(artifact: Artifact, flavor: str) -> bytes:
    """The bytes of a file artifact (a folder or a remote version has none)."""
    if artifact.data is None:
        raise WrongFlavor(f"{artifact.what}: {flavor} artifacts are single files")
    return artifact.data


def head(path: Path, size: int = 8) -> bytes:
    """The first bytes of a file ("" for a folder), to tell its flavor."""
    if not path.is_file():
        return b""
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None


def small_file(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file of at most `limit` bytes, or None for anything else (a
    folder, a device, a larger file): what a flavor of small documents looks at to tell its
    own."""
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        return path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror or exc}") from None


def dims(shape: Any) -> tuple[int, ...]:
    """A declared shape, with dimensions of unknown size as -1."""
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (shape or [-1]))


def as_array(out: Any, *, columns: bool = False) -> np.ndarray:
    """A stage's output as an array: sparse and pandas outputs made dense; a single column
    made flat, unless the next stage takes columns."""
    if hasattr(out, "toarray"):
        out = out.toarray()
    if hasattr(out, "to_numpy"):
        out = out.to_numpy()
    array = np.asarray(out)
    if not columns and array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    return array
