"""The `sklearn` flavor: a scikit-learn estimator saved with joblib or pickle. Loading it runs
code from the file, so it needs --trust."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from mlops.errors import WrongFlavor
from mlops.flavors.base import Artifact, file_bytes, head, require_trust
from mlops.flavors.estimator import EstimatorFlavor

_PICKLE_PROTOCOLS = {bytes([0x80, p]) for p in range(2, 6)}
_JOBLIB_COMPRESSED = (b"ZF", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18")


class SklearnFlavor(EstimatorFlavor):
    name = "sklearn"
    expected = "a joblib/pickle (sklearn)"

    def detect(self, path: Path, *, asked: bool = False) -> bool:
        start = head(path)
        return start[:2] in _PICKLE_PROTOCOLS or start.startswith(_JOBLIB_COMPRESSED)

    def load(self, artifact: Artifact) -> Any:
        data = file_bytes(artifact, self.name)
        require_trust(self.name, artifact)
        import joblib

        try:
            return joblib.load(io.BytesIO(data))
        except Exception as exc:
            raise WrongFlavor(
                f"{artifact.what} could not be loaded as a joblib/pickle file: {exc}"
            ) from None
