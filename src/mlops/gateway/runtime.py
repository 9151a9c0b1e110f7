"""Loaded versions and release pipelines: what turns a feature matrix into predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops.core.signature import Signature
from mlops.records import ModelVersion

ROLE_ORDER = {"preprocessor": 0, "model": 1, "postprocessor": 2}


def component_rank(name: str) -> tuple[int, str]:
    """Pipeline order: preprocessors, then the model, then postprocessors."""
    for role, rank in ROLE_ORDER.items():
        if name == role or name.startswith(role):
            return rank, name
    return 1, name


class LoadedVersion:
    """One registered version in memory, with a call that maps rows to outputs."""

    def __init__(self, record: ModelVersion, model: Any) -> None:
        self.record = record
        self.model = model
        self.signature = Signature.from_dict(record.signature)
        self.label = f"{record.model}:{record.version}"
        self._names = getattr(model, "feature_names_in_", None)
        self._onnx_inputs: list[tuple[str, Any]] = []
        if record.flavor == "onnx":
            dtypes = {
                "tensor(float)": np.float32,
                "tensor(double)": np.float64,
                "tensor(int64)": np.int64,
            }
            self._onnx_inputs = [
                (i.name, dtypes.get(i.type, np.float32)) for i in model.get_inputs()
            ]
            self._onnx_output = model.get_outputs()[0].name

    def __call__(self, rows: np.ndarray, stage: str = "predict") -> np.ndarray:
        flavor = self.record.flavor
        if flavor == "onnx":
            return self._run_onnx(rows)
        features: Any = rows
        if self._names is not None or (flavor == "mlflow" and self.signature.features):
            import pandas as pd

            names = (
                list(self._names)
                if self._names is not None
                else [f.name for f in self.signature.features]
            )
            features = pd.DataFrame(rows, columns=names)
        if stage == "transform" and hasattr(self.model, "transform"):
            out = self.model.transform(features)
        else:
            out = self.model.predict(features)
        return _as_array(out)

    def _run_onnx(self, rows: np.ndarray) -> np.ndarray:
        if len(self._onnx_inputs) == 1:
            name, dtype = self._onnx_inputs[0]
            feeds = {name: rows.astype(dtype, copy=False)}
        else:
            feeds = {
                name: rows[:, i : i + 1].astype(dtype, copy=False)
                for i, (name, dtype) in enumerate(self._onnx_inputs)
            }
        return _as_array(self.model.run([self._onnx_output], feeds)[0])


def _as_array(out: Any) -> np.ndarray:
    if hasattr(out, "to_numpy"):
        out = out.to_numpy()
    array = np.asarray(out)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    return array


@dataclass(frozen=True)
class Pipeline:
    """The components of one release, run in order on a batch of rows."""

    stages: tuple[tuple[str, LoadedVersion], ...]

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(version.record.id for _, version in self.stages)

    @property
    def primary(self) -> LoadedVersion:
        for name, version in self.stages:
            if name == "model":
                return version
        return self.stages[-1][1]

    @property
    def signature(self) -> Signature:
        return self.stages[0][1].signature

    @property
    def labels(self) -> str:
        return ",".join(f"{name}={version.label}" for name, version in self.stages)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = rows
        for name, version in self.stages:
            stage = "predict" if component_rank(name)[0] == 1 else "transform"
            out = version(out, stage)
        return out


def make_pipeline(components: Sequence[tuple[str, LoadedVersion]]) -> Pipeline:
    return Pipeline(tuple(sorted(components, key=lambda c: component_rank(c[0]))))
