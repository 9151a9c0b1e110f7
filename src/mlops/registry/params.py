"""Params versions: a decision threshold or a label map, declared in a small JSON or YAML file.

    {"threshold": 0.7}
    {"labels": {"0": "legit", "1": "fraud"}}
    {"threshold": 0.7, "labels": {"0": "legit", "1": "fraud"}}

Reading one runs no code (mlops.documents: JSON, or YAML without aliases or tags, bounded in
size, depth and count), so it needs no --trust. A threshold
takes the model's class probabilities and answers the model's second class (scikit-learn's
positive class: 1 of 0/1) when its probability is at least the threshold, else the first.
A label map turns each class the model answers into its name; the threshold, when both are
given, comes first.

A file with a `lookup` (see mlops.core.lookup) declares a stage that reads feature values from
one of the deployment's data resources: it is read here, and bound to the resource when the
gateway serves it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops.core.components import PARAMS_SOURCE, PROBABILITIES, label_key
from mlops.core.lookup import MISSING, LookupSpec
from mlops.core.signature import Signature, TensorSpec
from mlops.documents import DEFAULT_LIMITS, NotADocument, load_json_or_yaml, shown
from mlops.errors import InvalidInput

KEYS = ("threshold", "labels", "lookup")
LOOKUP_KEYS = ("resource", "table", "key", "columns", "inputs", "missing")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_BYTES = DEFAULT_LIMITS.max_bytes
"""Larger files are not read as params."""
MAX_LABEL = 256
"""Characters in a label (it goes into every answer)."""

FORMAT_HINT = (
    'expected {"threshold": 0.7}, {"labels": {"0": "legit", "1": "fraud"}} or both, or '
    '{"lookup": {"resource": …, "table": …, "key": …, "columns": […]}} (JSON or YAML)'
)


def read_mapping(data: bytes, what: str = "the params file") -> dict[Any, Any] | None:
    """The mapping a small JSON or YAML text holds, or None when `data` is no JSON or YAML text
    or holds something else. A document past the loader's limits (aliases, size, depth, count,
    64-bit integers) is refused with InvalidInput."""
    try:
        value = load_json_or_yaml(data, what)
    except NotADocument:
        return None
    return value if isinstance(value, dict) else None


def looks_like_params(data: bytes, what: str = "the file") -> bool:
    """Whether `data` is meant as a params file: a mapping with a threshold, labels or a lookup."""
    if len(data) > MAX_BYTES:
        return False
    mapping = read_mapping(data, what)
    return mapping is not None and any(key in mapping for key in KEYS)


@dataclass(frozen=True)
class Params:
    threshold: float | None = None
    labels: tuple[tuple[str, Any], ...] = ()
    """(class as text, label) pairs, in the file's order."""

    @property
    def wants_probabilities(self) -> bool:
        return self.threshold is not None

    @property
    def names(self) -> tuple[Any, ...]:
        """The labels, each once, in the file's order."""
        return tuple(dict.fromkeys(label for _, label in self.labels))

    def signature(self) -> Signature:
        if self.threshold is not None:
            inputs = (TensorSpec(PROBABILITIES, "float64", (-1, 2)),)
        else:
            inputs = (TensorSpec("predictions", "object", (-1,)),)
        names = self.names
        dtype = "string" if names and all(isinstance(n, str) for n in names) else "object"
        return Signature(
            inputs=inputs,
            outputs=(TensorSpec("predict", dtype),),
            output_kind="classification",
            classes=names,
            source=PARAMS_SOURCE,
            input_classes=tuple(key for key, _ in self.labels),
        )

    def apply(self, values: np.ndarray, classes: Sequence[Any] | None) -> np.ndarray:
        """The stage's answer for the previous stage's output: probabilities (n, 2) when it
        wants them, else predictions (n,). `classes` are the model's, in its column order."""
        out = values
        if self.threshold is not None:
            out = self._decide(values, classes)
        if self.labels:
            out = self._name(out)
        return out

    def _decide(self, probabilities: np.ndarray, classes: Sequence[Any] | None) -> np.ndarray:
        if probabilities.ndim != 2 or probabilities.shape[1] != 2:
            raise ValueError(
                "a threshold needs the probabilities of two classes, got an array of shape "
                f"{probabilities.shape}"
            )
        pair = np.asarray(list(classes) if classes is not None and len(classes) == 2 else [0, 1])
        if pair.dtype.kind in "US":
            pair = pair.astype(object)
        assert self.threshold is not None
        chosen: np.ndarray = pair[(probabilities[:, 1] >= self.threshold).astype(np.intp)]
        return chosen

    def _name(self, predictions: np.ndarray) -> np.ndarray:
        table = dict(self.labels)
        keys = [label_key(v) for v in predictions.reshape(-1).tolist()]
        unknown = sorted({k for k in keys if k not in table})
        if unknown:
            raise ValueError(f"the label map has no label for class {unknown[0]!r}")
        names = [table[k] for k in keys]
        if all(isinstance(n, str) for n in names):
            return np.asarray(names, dtype=object)
        return np.asarray(names)


def parse_params(data: bytes, what: str) -> Params | LookupSpec:
    """The params a file declares, or InvalidInput naming the first thing wrong with it."""
    mapping = load_json_or_yaml(data, what)
    if not isinstance(mapping, dict):
        raise InvalidInput(f"{what} is not a params file: {FORMAT_HINT}")
    unknown = sorted(str(k) for k in mapping if k not in KEYS)
    if unknown:
        raise InvalidInput(
            f"{what}: unknown key {shown(unknown[0])} in a params file; the keys are "
            f"{', '.join(KEYS)}"
        )
    if not any(key in mapping for key in KEYS):
        raise InvalidInput(f"{what} declares nothing: {FORMAT_HINT}")
    if "lookup" in mapping:
        if len(mapping) > 1:
            raise InvalidInput(f"{what}: a lookup is a stage of its own: declare it alone")
        return _lookup(mapping["lookup"], what)
    threshold = _threshold(mapping.get("threshold"), what) if "threshold" in mapping else None
    labels = _labels(mapping["labels"], what) if "labels" in mapping else ()
    return Params(threshold, labels)


def _threshold(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(
            f"{what}: threshold must be a number between 0 and 1, not {shown(value)}"
        )
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise InvalidInput(
            f"{what}: threshold must be between 0 and 1 (exclusive), not {shown(value)}"
        )
    return float(value)


def _labels(value: Any, what: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, dict) or not value:
        raise InvalidInput(
            f'{what}: labels must map each class to its name, e.g. {{"0": "legit", "1": "fraud"}}'
        )
    out: dict[str, Any] = {}
    for key, label in value.items():
        if key is None or isinstance(key, list | dict):
            raise InvalidInput(f"{what}: labels: {shown(key)} is not a class")
        if isinstance(label, bool) or not isinstance(label, str | int | float):
            raise InvalidInput(
                f"{what}: labels: the label of class {shown(key)} must be text or a number, "
                f"not {shown(label)}"
            )
        if isinstance(label, float) and not math.isfinite(label):
            raise InvalidInput(f"{what}: labels: the label of class {shown(key)} is not finite")
        if isinstance(label, str) and not label.strip():
            raise InvalidInput(f"{what}: labels: the label of class {shown(key)} is empty")
        if isinstance(label, str) and len(label) > MAX_LABEL:
            raise InvalidInput(
                f"{what}: labels: the label of class {shown(key)} is longer than {MAX_LABEL} "
                "characters"
            )
        text = label_key(key)
        if text in out:
            raise InvalidInput(f"{what}: labels: class {shown(text)} is named twice")
        out[text] = label
    return tuple(out.items())


def _lookup(value: Any, what: str) -> LookupSpec:
    where = f"{what}: lookup"
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a mapping with resource, table, key and columns")
    unknown = sorted(str(k) for k in value if k not in LOOKUP_KEYS)
    if unknown:
        raise InvalidInput(
            f"{where}: unknown key {shown(unknown[0])}; the keys are {', '.join(LOOKUP_KEYS)}"
        )
    for needed in ("resource", "table", "key", "columns"):
        if needed not in value:
            raise InvalidInput(f"{where} needs {needed!r}")
    resource, table, key = (
        _identifier(value[k], f"{where}: {k}") for k in ("resource", "table", "key")
    )
    columns = _identifiers(value["columns"], f"{where}: columns")
    inputs = _identifiers(value.get("inputs", [key]), f"{where}: inputs")
    if key not in inputs:
        raise InvalidInput(f"{where}: inputs must include the key {key!r}")
    if key in columns:
        raise InvalidInput(f"{where}: the key {key!r} is not one of the columns it reads")
    both = sorted(set(inputs) & set(columns))
    if both:
        raise InvalidInput(f"{where}: {both[0]!r} is both a request field and a column read")
    missing = value.get("missing", "error")
    if missing not in MISSING:
        raise InvalidInput(f"{where}: missing must be error or nan, not {shown(missing)}")
    return LookupSpec(resource, table, key, columns, inputs, missing)


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise InvalidInput(
            f"{where} must be a name of letters, digits and underscores, not {shown(value)}"
        )
    return value


def _identifiers(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{where} must be a list of names")
    names = tuple(_identifier(v, where) for v in value)
    if len(set(names)) != len(names):
        raise InvalidInput(f"{where} names a column twice")
    return names
