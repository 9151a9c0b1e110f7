"""Loaded versions and release pipelines: what turns a feature matrix into predictions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from mlops.core.components import LOOKUP, MODEL, POST, ROLE_ORDER, component_rank
from mlops.core.lookup import LookupSpec
from mlops.core.signature import Signature
from mlops.gateway.lookup import FeatureReader
from mlops.records import DataResource, ModelVersion
from mlops.registry.params import Params

__all__ = ["ROLE_ORDER", "LoadedVersion", "Pipeline", "component_rank", "make_pipeline"]


class LoadedVersion:
    """One registered version in memory, with a call that maps rows to outputs."""

    def __init__(self, record: ModelVersion, model: Any) -> None:
        self.record = record
        self.model = model
        self.signature = Signature.from_dict(record.signature)
        self.label = f"{record.model}:{record.version}"
        self.params: Params | None = model if isinstance(model, Params) else None
        self.lookup: LookupSpec | None = model if isinstance(model, LookupSpec) else None
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
            outputs = [o.name for o in model.get_outputs()]
            self._onnx_output = outputs[0]
            self._onnx_probabilities = next((o for o in outputs if "prob" in o.lower()), None)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The columns this stage takes by name, when it names them."""
        if self._names is not None:
            return tuple(str(n) for n in self._names)
        return tuple(spec.name for spec in self.signature.features)

    @property
    def wants_probabilities(self) -> bool:
        return self.params is not None and self.params.wants_probabilities

    @property
    def classes(self) -> tuple[Any, ...] | None:
        """The classes the model answers, in the order of its probability columns."""
        found = getattr(self.model, "classes_", None)
        if found is not None:
            return tuple(np.asarray(found).tolist())
        return self.signature.classes or None

    def __call__(self, rows: np.ndarray, stage: str = "predict") -> np.ndarray:
        """`stage` is `predict`, `predict_proba` (the class probabilities) or `transform`."""
        flavor = self.record.flavor
        if self.params is not None:
            return self.params.apply(rows, None)
        if self.lookup is not None:
            raise LookupError(f"{self.label} is a lookup: it runs bound to a data resource")
        if flavor == "onnx":
            return self._run_onnx(rows, stage)
        features: Any = rows
        if self._names is not None or (flavor == "mlflow" and self.signature.features):
            import pandas as pd

            names = (
                list(self._names)
                if self._names is not None
                else [f.name for f in self.signature.features]
            )
            features = pd.DataFrame(rows, columns=names)
            if rows.dtype == object:
                features = features.infer_objects()
        if stage == "transform" and hasattr(self.model, "transform"):
            return _as_array(self.model.transform(features), columns=True)
        if stage == "predict_proba":
            if not hasattr(self.model, "predict_proba"):
                raise TypeError(
                    f"{self.label} gives no class probabilities (no predict_proba), which the "
                    "next stage (a threshold) needs"
                )
            return _as_array(self.model.predict_proba(features), columns=True)
        return _as_array(self.model.predict(features))

    def _run_onnx(self, rows: np.ndarray, stage: str) -> np.ndarray:
        if len(self._onnx_inputs) == 1:
            name, dtype = self._onnx_inputs[0]
            feeds = {name: rows.astype(dtype, copy=False)}
        else:
            feeds = {
                name: rows[:, i : i + 1].astype(dtype, copy=False)
                for i, (name, dtype) in enumerate(self._onnx_inputs)
            }
        if stage == "predict_proba":
            if self._onnx_probabilities is None:
                raise TypeError(f"{self.label} has no probability output for a threshold")
            out = self.model.run([self._onnx_probabilities], feeds)[0]
            if not isinstance(out, np.ndarray):
                raise TypeError(
                    f"{self.label} gives probabilities as a map (ZipMap); export it with "
                    "zipmap=False for a threshold"
                )
            return _as_array(out, columns=True)
        return _as_array(
            self.model.run([self._onnx_output], feeds)[0], columns=stage == "transform"
        )


def _as_array(out: Any, *, columns: bool = False) -> np.ndarray:
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


Step = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Pipeline:
    """The components of one release, run in order on a batch of rows."""

    stages: tuple[tuple[str, LoadedVersion], ...]
    steps: tuple[Step, ...] = field(default=(), compare=False, repr=False)
    classes: tuple[Any, ...] = ()
    """The classes the pipeline answers (a label map's names, or the model's), when known."""
    reads: tuple[str, ...] = ()
    """The locations of the data resources its lookup reads."""

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(version.record.id for _, version in self.stages)

    @property
    def batch_key(self) -> tuple[Any, ...]:
        """Pipelines that run alike: the same versions reading the same data."""
        return (*self.key, *self.reads)

    @property
    def primary(self) -> LoadedVersion:
        for name, version in self.stages:
            if name == "model":
                return version
        return self.stages[-1][1]

    @property
    def signature(self) -> Signature:
        """What a request must fit: the first stage's signature."""
        return self.stages[0][1].signature

    @property
    def output_signature(self) -> Signature:
        """What the answers are: the last postprocessor's signature, else the model's."""
        name, last = self.stages[-1]
        return last.signature if component_rank(name)[0] == POST else self.primary.signature

    @property
    def output_kind(self) -> str:
        return self.output_signature.output_kind

    @property
    def labels(self) -> str:
        return ",".join(f"{name}={version.label}" for name, version in self.stages)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = rows
        for step in self.steps:
            out = step(out)
        return _as_array(out)


def make_pipeline(
    components: Sequence[tuple[str, LoadedVersion]],
    resources: Mapping[str, DataResource] | None = None,
) -> Pipeline:
    """The stages in order, each called as the next one needs: a model followed by a stage that
    wants probabilities (a threshold) is asked for `predict_proba` instead of `predict`; a
    lookup reads the deployment's data `resources`, and gives the columns the next stage
    names, in its order."""
    stages = tuple(sorted(components, key=lambda c: component_rank(c[0])))
    steps: list[Step] = []
    classes: tuple[Any, ...] | None = None
    reads: list[str] = []
    for index, (name, version) in enumerate(stages):
        following = stages[index + 1][1] if index + 1 < len(stages) else None
        if version.lookup is not None:
            reader = _bind(name, version, version.lookup, following, resources or {})
            steps.append(reader)
            reads.append(reader.resource.location)
            continue
        if version.params is not None:
            steps.append(partial(version.params.apply, classes=classes))
            classes = version.params.names or classes
            continue
        if component_rank(name)[0] == MODEL:
            wants = following is not None and following.wants_probabilities
            steps.append(partial(version, stage="predict_proba" if wants else "predict"))
            classes = version.classes
        else:
            steps.append(partial(version, stage="transform"))
            if component_rank(name)[0] == POST:
                classes = tuple(version.signature.classes) or None
    return Pipeline(stages, tuple(steps), tuple(classes or ()), tuple(reads))


def _bind(
    name: str,
    version: LoadedVersion,
    spec: LookupSpec,
    following: LoadedVersion | None,
    resources: Mapping[str, DataResource],
) -> FeatureReader:
    if component_rank(name)[0] != LOOKUP:
        raise LookupError(f"{version.label} is a lookup: it must be the component 'lookup'")
    resource = resources.get(spec.resource)
    if resource is None:
        raise LookupError(
            f"{version.label} reads the data resource {spec.resource!r}, which the deployment "
            "does not declare"
        )
    named = following.feature_names if following is not None else ()
    return FeatureReader(spec, resource, named or spec.outputs)
