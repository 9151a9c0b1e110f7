"""Release pipelines: the components of a release, run in order on a batch of rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from mlops.core.components import LOOKUP, MODEL, POST, component_rank
from mlops.core.lookup import LookupSpec
from mlops.core.signature import Signature
from mlops.flavors import linear
from mlops.flavors.base import as_array
from mlops.records import DataResource
from mlops.runtime.lookup import FeatureReader
from mlops.runtime.version import LoadedVersion

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
        return as_array(out)

    @property
    def bounded(self) -> bool:
        """Whether every stage costs a bounded few microseconds a row and runs no model code of
        its own (scikit-learn's linear models, params): cheaper to run where the request is
        than to hand to a thread."""
        return not self.reads and all(
            version.params is not None or linear.bounded(version.model)
            for _, version in self.stages
        )

    @property
    def probability_classes(self) -> tuple[Any, ...] | None:
        """The classes of the probabilities it can give (a lone classifier), else None."""
        if len(self.stages) != 1 or component_rank(self.stages[0][0])[0] != MODEL:
            return None
        return self.primary.classes

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """The class probabilities of `rows`, one column per class (`probability_classes`)."""
        return as_array(self.primary(rows, stage="predict_proba"), columns=True)


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
