"""Absolute checks on metrics read from a metric provider (a PromQL query), as Flagger's metric
templates and Argo Rollouts' analysis metrics offer them.

Each metric is read once per interval. A reading is a number, no data, or a query error:

- a number outside [min, max] counts a failure; more than `failure_limit` failures fail;
- no data (an empty result) is never success: the metric stays inconclusive;
- a query error counts a consecutive error; more than `error_limit` in a row fail.

A metric passes while its latest reading is in range. A failed metric stays failed.
The state is a JSON-ready mapping: metric name -> {at, failures, errors, status, reason}.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["pass", "fail", "inconclusive"]
Status = Literal["pass", "out", "no_data", "error", "fail"]

PLACEHOLDERS = frozenset({"deployment", "stable_revision", "candidate_revision", "interval"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class MetricCheck:
    name: str
    min: float | None = None
    max: float | None = None
    interval_s: float = 30.0
    failure_limit: int = 0
    error_limit: int = 4
    provider: str = "prometheus"

    @property
    def label(self) -> str:
        return f"{self.provider} metric {self.name}"


@dataclass(frozen=True)
class NoData:
    detail: str = "the query returned no series"


@dataclass(frozen=True)
class QueryError:
    message: str


Reading = float | NoData | QueryError


@dataclass(frozen=True)
class MetricVerdict:
    outcome: Outcome
    reasons: tuple[str, ...]


def placeholders_in(template: str) -> frozenset[str]:
    """The `{name}` placeholders of a query template (PromQL's `{label="x"}` is not one)."""
    return frozenset(_PLACEHOLDER.findall(template))


def render_query(template: str, values: Mapping[str, str]) -> str:
    """The template with each `{name}` replaced by `values[name]`; no escaping of braces needed."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def prometheus_duration(seconds: float) -> str:
    """A duration as PromQL writes it: `30s`, or `1500ms` when not whole seconds."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def due_metrics(
    checks: Sequence[MetricCheck], state: Mapping[str, Any], now: float
) -> tuple[str, ...]:
    """The metrics to read now: never read, or read at least their interval ago, and not failed."""
    return tuple(check.name for check in checks if _due(check, state.get(check.name), now))


def _due(check: MetricCheck, last: Mapping[str, Any] | None, now: float) -> bool:
    if not last:
        return True
    if last.get("status") == "fail":
        return False
    return now - float(last["at"]) >= check.interval_s


def assess_metrics(
    checks: Sequence[MetricCheck],
    state: Mapping[str, Any],
    readings: Mapping[str, Reading],
    now: float,
) -> tuple[dict[str, Any], MetricVerdict]:
    """Count this tick's readings into the state and judge every metric.

    Only the readings of due metrics count (one per interval); the others keep their last
    result.
    """
    new: dict[str, Any] = {}
    for check in checks:
        last = state.get(check.name)
        if check.name in readings and _due(check, last, now):
            new[check.name] = _read(check, last or {}, readings[check.name], now)
        elif last:
            new[check.name] = dict(last)
    statuses = [new[c.name]["status"] if c.name in new else None for c in checks]
    reasons = [
        new[c.name]["reason"] if c.name in new else f"{c.label}: not read yet" for c in checks
    ]
    if "fail" in statuses:
        failing = [r for r, s in zip(reasons, statuses, strict=True) if s == "fail"]
        rest = [r for r, s in zip(reasons, statuses, strict=True) if s != "fail"]
        return new, MetricVerdict("fail", (*failing, *rest))
    outcome: Outcome = "pass" if all(s == "pass" for s in statuses) else "inconclusive"
    return new, MetricVerdict(outcome, tuple(reasons))


def _read(
    check: MetricCheck, last: Mapping[str, Any], reading: Reading, now: float
) -> dict[str, Any]:
    failures = int(last.get("failures", 0))
    errors = int(last.get("errors", 0))
    status: Status
    if isinstance(reading, QueryError):
        errors += 1
        status = "fail" if errors > check.error_limit else "error"
        reason = (
            f"{check.label}: query failed ({errors} in a row; error_limit {check.error_limit}): "
            f"{reading.message}"
        )
    elif isinstance(reading, NoData) or math.isnan(reading):
        errors = 0
        status = "no_data"
        detail = reading.detail if isinstance(reading, NoData) else "the query returned NaN"
        reason = f"{check.label}: no data ({detail})"
    else:
        errors = 0
        value = float(reading)
        if check.max is not None and value > check.max:
            out = f"{_num(value)} > max {_num(check.max)}"
        elif check.min is not None and value < check.min:
            out = f"{_num(value)} < min {_num(check.min)}"
        else:
            out = ""
        if out:
            failures += 1
            status = "fail" if failures > check.failure_limit else "out"
            noun = "failure" if failures == 1 else "failures"
            reason = (
                f"{check.label} = {out} ({failures} {noun}; failure_limit {check.failure_limit})"
            )
        else:
            status = "pass"
            reason = f"{check.label} = {_num(value)}, within {_bounds(check)}"
    return {"at": now, "failures": failures, "errors": errors, "status": status, "reason": reason}


def _bounds(check: MetricCheck) -> str:
    if check.min is not None and check.max is not None:
        return f"[{_num(check.min)}, {_num(check.max)}]"
    if check.max is not None:
        return f"max {_num(check.max)}"
    assert check.min is not None
    return f"min {_num(check.min)}"


def _num(value: float) -> str:
    return f"{value:.4g}"
