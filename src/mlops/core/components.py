"""The components of a release as a pipeline: their order, and whether their signatures fit.

A release runs its lookup (feature values read from a data resource), its preprocessors, then
its model, then its postprocessors. Each stage takes
what the one before it gives: a preprocessor's columns, the model's predictions, or, for a
stage that asks for them (a decision threshold), the model's class probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlops.core.lookup import LOOKUP_SOURCE, lookup_problem
from mlops.core.signature import Signature

ROLE_ORDER = {"lookup": -1, "preprocessor": 0, "model": 1, "postprocessor": 2}
LOOKUP, PRE, MODEL, POST = -1, 0, 1, 2

TABLE_DRIVERS = ("sqlite", "postgresql")
"""The data resources a lookup can read."""
PARAMS_SOURCE = "params"
"""`Signature.source` of a params version (a decision threshold, a label map)."""
PROBABILITIES = "probabilities"
"""The input name of a stage that takes the model's class probabilities, not its predictions."""


def component_rank(name: str) -> tuple[int, str]:
    """Pipeline order: the lookup, preprocessors, then the model, then postprocessors."""
    for role, rank in ROLE_ORDER.items():
        if name == role or name.startswith(role):
            return rank, name
    return MODEL, name


def wants_probabilities(signature: Signature) -> bool:
    return bool(signature.inputs) and signature.inputs[0].name == PROBABILITIES


def label_key(value: object) -> str:
    """A class as the text a label map is keyed by; 1.0 and 1 are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@dataclass(frozen=True)
class Stage:
    component: str
    label: str
    """MODEL:VERSION, for messages."""
    signature: Signature


def unread_resource(stages: Sequence[Stage], resources: Mapping[str, str]) -> str | None:
    """Why a lookup among `stages` cannot run: it reads none of the deployment's `resources`
    (name -> driver), or one that is not a database."""
    for stage in stages:
        reads = stage.signature.reads
        if stage.signature.source != LOOKUP_SOURCE:
            continue
        what = f"component {stage.component!r} ({stage.label})"
        if reads not in resources:
            return (
                f"{what} reads the data resource {reads!r}, which the deployment does not "
                "declare (`mlops data add`)"
            )
        if resources[reads] not in TABLE_DRIVERS:
            return (
                f"{what} reads a table from {reads!r}, which is a {resources[reads]}, not an "
                "SQLite or PostgreSQL database"
            )
    return None


def pipeline_problem(stages: Sequence[Stage]) -> str | None:
    """Why these components cannot run as one pipeline, or None when their signatures fit.

    Only what the signatures say is checked: a stage whose signature does not tell (an MLflow
    model without classes, a transformer of unknown width) passes.
    """
    ordered = sorted(stages, key=lambda s: component_rank(s.component))
    previous: Stage | None = None
    for stage in ordered:
        problem = _stage_problem(previous, stage)
        if problem is not None:
            return problem
        previous = stage
    return None


def _stage_problem(before: Stage | None, stage: Stage) -> str | None:
    sig = stage.signature
    what = f"component {stage.component!r} ({stage.label})"
    params = sig.source == PARAMS_SOURCE
    rank = component_rank(stage.component)[0]
    if params and rank != POST:
        return f"{what} is a params file: it can only be a postprocessor"
    if (sig.source == LOOKUP_SOURCE) != (rank == LOOKUP):
        if rank == LOOKUP:
            return f"{what} is not a lookup: only a lookup file can be the component 'lookup'"
        return f"{what} is a lookup: it must be the component named 'lookup'"
    if before is None:
        return None
    prev = before.signature
    prev_what = f"{before.component!r} ({before.label})"
    if prev.source == LOOKUP_SOURCE:
        takes = [spec.name for spec in sig.features]
        gives = [spec.name for spec in prev.outputs]
        problem = lookup_problem(gives, takes) if takes else None
        width = sig.n_features
        if problem is None and not takes and width is not None and width != len(gives):
            problem = f"it gives {len(gives)} columns and the next stage takes {width}"
        return f"{prev_what} cannot feed {what}: {problem}" if problem else None
    if wants_probabilities(sig):
        if component_rank(before.component)[0] != MODEL:
            return f"{what} is a threshold: it must follow the model, not {prev_what}"
        if prev.output_kind not in ("classification", "unknown"):
            return (
                f"{what} is a threshold, which needs a classifier's probabilities; "
                f"{prev_what} is a {prev.output_kind} model"
            )
        if prev.classes and len(prev.classes) != 2:
            return (
                f"{what} is a threshold, which needs a binary classifier; "
                f"{prev_what} has {len(prev.classes)} classes"
            )
    if params and sig.input_classes and prev.source != PARAMS_SOURCE:
        named = set(sig.input_classes)
        missing = [c for c in prev.classes if label_key(c) not in named]
        if missing:
            return f"{what} has no label for class {label_key(missing[0])!r} of {prev_what}"
    if not params:
        given, wanted = _width_out(prev), sig.n_features
        if given is not None and wanted is not None and given != wanted:
            return f"{prev_what} gives {given} columns but {what} takes {wanted}"
    return None


def _width_out(sig: Signature) -> int | None:
    """How many columns a transformer gives, when its signature says."""
    if sig.output_kind != "transform" or not sig.outputs:
        return None
    shape = sig.outputs[0].shape
    if len(shape) == 2 and shape[1] > 0:
        return shape[1]
    return None
