"""A registered version in memory: its record, its loaded model, and the call that runs it."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.core.lookup import LookupSpec
from mlops.core.signature import Signature
from mlops.flavors import FLAVORS, Flavors, Stage
from mlops.records import ModelVersion
from mlops.registry.loaders import flavor_of
from mlops.registry.params import Params


class LoadedVersion:
    """One registered version in memory, with a call that maps rows to outputs (its flavor's
    `predict`)."""

    def __init__(self, record: ModelVersion, model: Any, flavors: Flavors = FLAVORS) -> None:
        self.record = record
        self.model = model
        self.flavor = flavor_of(record.flavor, flavors)
        self.signature = Signature.from_dict(record.signature)
        self.label = f"{record.model}:{record.version}"
        self.params: Params | None = model if isinstance(model, Params) else None
        self.lookup: LookupSpec | None = model if isinstance(model, LookupSpec) else None
        self._names = getattr(model, "feature_names_in_", None)

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

    def __call__(self, rows: np.ndarray, stage: Stage = "predict") -> np.ndarray:
        """`stage` is `predict`, `predict_proba` (the class probabilities) or `transform`."""
        return self.flavor.predict(self.model, rows, stage, self.signature, self.label)
