"""The `skops` flavor: a scikit-learn estimator saved with skops. It loads without --trust only
when it holds nothing but the types skops trusts by default."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from mlops.errors import UntrustedArtifact, WrongFlavor
from mlops.flavors.base import TRUST_HINT, Artifact, file_bytes, head
from mlops.flavors.estimator import EstimatorFlavor


class SkopsFlavor(EstimatorFlavor):
    name = "skops"
    expected = "skops"

    def detect(self, path: Path, *, asked: bool = False) -> bool:
        if not head(path).startswith(b"PK\x03\x04"):
            return False
        try:
            with zipfile.ZipFile(path) as archive:
                return "schema.json" in archive.namelist()
        except zipfile.BadZipFile:
            return False

    def load(self, artifact: Artifact) -> Any:
        import skops.io

        data = file_bytes(artifact, self.name)
        # Whatever skops does not trust by default may run code when it is rebuilt (even
        # inside scikit-learn or NumPy: a numpy DataSource deletes a folder when collected).
        untrusted = untrusted_types(data)
        if untrusted and not artifact.trusted:
            listed = ", ".join(untrusted[:5]) + (", …" if len(untrusted) > 5 else "")
            raise UntrustedArtifact(
                f"{artifact.what} is a skops file that holds types skops does not trust by "
                f"default ({listed}); {TRUST_HINT}"
            )
        try:
            return skops.io.loads(data, trusted=untrusted or None)
        except Exception as exc:
            raise WrongFlavor(
                f"{artifact.what} could not be loaded as a skops file: {exc}"
            ) from None


def untrusted_types(data: bytes) -> list[str]:
    import skops.io

    try:
        return list(skops.io.get_untrusted_types(data=data))
    except Exception as exc:
        raise WrongFlavor(f"not a readable skops file: {exc}") from None
