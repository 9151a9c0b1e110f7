"""A flavor for tests: a "model" that is a text file `FAKE <scale>`, answering each row's sum
times its scale. A version with no artifact (`data` and `folder` both None) is served
"remotely": `load` gives a client named by the artifact's source, as a V2 server would be."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops.core.signature import Signature, TensorSpec
from mlops.errors import WrongFlavor
from mlops.flavors import Artifact, Stage
from mlops.registry.signatures import merge_sample

MAGIC = b"FAKE "


@dataclass
class FakeModel:
    scale: float
    source: str = ""
    classes_: tuple[int, ...] | None = None


@dataclass
class FakeFlavor:
    name: str = "fake"
    expected: str = "a fake model file"
    calls: list[tuple[str, int]] = field(default_factory=list)
    """(stage, rows) of each predict call."""

    def detect(self, path: Path, *, asked: bool = False) -> bool:
        return path.is_file() and path.read_bytes().startswith(MAGIC)

    def load(self, artifact: Artifact) -> FakeModel:
        if artifact.data is None and artifact.folder is None:
            return FakeModel(1.0, source=artifact.source)
        if artifact.data is None or not artifact.data.startswith(MAGIC):
            raise WrongFlavor(f"{artifact.what} is not a fake model")
        return FakeModel(float(artifact.data[len(MAGIC) :]))

    def signature(self, artifact: Artifact, sample: Signature | None) -> Signature:
        self.load(artifact)
        own = Signature(
            inputs=(TensorSpec("input", "float64", (-1, 2)),),
            outputs=(TensorSpec("predict", "float64"),),
            output_kind="regression",
        )
        return merge_sample(own, sample, artifact.what)

    def predict(
        self, model: Any, rows: np.ndarray, stage: Stage, signature: Signature, label: str
    ) -> np.ndarray:
        self.calls.append((stage, rows.shape[0]))
        total = rows.astype(np.float64).sum(axis=1) * model.scale
        if stage == "predict_proba":
            high = 1.0 / (1.0 + np.exp(-total))
            return np.stack([1.0 - high, high], axis=1)
        return total
