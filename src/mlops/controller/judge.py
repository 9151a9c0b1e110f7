"""The analysis as the rollout core's judge: a rollout spec's `analysis:` section in, a
pure function over (state, stable increment, candidate increment, elapsed) out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops.core.analysis import SequentialState, assess
from mlops.core.measure import Measurements, combine
from mlops.core.metric_checks import MetricCheck, Reading, assess_metrics
from mlops.core.rollout import Judge
from mlops.rollout_spec import analysis_spec

METRICS = "metrics"
"""The key of the metric checks' state in the analysis state, beside the built-in judge's."""


@dataclass(frozen=True)
class Waiting:
    outcome: str = "inconclusive"
    reasons: tuple[str, ...] = ("the candidate has no traffic yet",)


def analysis_judge(section: dict[str, Any]) -> Judge:
    """The judge for one rollout. Until the candidate answers its first requests, the stable
    release's measurements accumulate as the baseline its latency thresholds are learned from."""
    spec = analysis_spec(section)

    def judge(
        state: dict[str, Any], stable: Measurements, candidate: Measurements, elapsed_s: float
    ) -> tuple[dict[str, Any], Any]:
        if "sequential" not in state:
            before = _from(state.get("baseline"), stable)
            if candidate.judged == 0:
                grown = combine([m for m in (before, stable) if m is not None])
                return {"baseline": _to(grown)}, Waiting()
            # The latency thresholds come only from before the candidate had traffic.
            share = candidate.judged / max(1, candidate.judged + stable.judged)
            sequential = SequentialState.start(spec, before, share)
        else:
            sequential = SequentialState.from_dict(state["sequential"])
        sequential, verdict = assess(spec, sequential, stable, candidate, elapsed_s=elapsed_s)
        return {"sequential": sequential.to_dict()}, verdict

    return judge


@dataclass(frozen=True)
class Combined:
    outcome: str
    reasons: tuple[str, ...]
    hold: bool
    """A metric is not in range yet (no data, a query error, out of range within its limit):
    the current pause step may not complete."""


def with_metrics(
    judge: Judge, checks: Sequence[MetricCheck], readings: Mapping[str, Reading], now: float
) -> Judge:
    """`judge` and the metric checks together, over this tick's readings taken at `now`: fail
    if either fails, pass if both pass."""

    def combined(
        state: dict[str, Any], stable: Measurements, candidate: Measurements, elapsed_s: float
    ) -> tuple[dict[str, Any], Any]:
        inner_state = {k: v for k, v in state.items() if k != METRICS}
        inner_state, inner = judge(inner_state, stable, candidate, elapsed_s)
        metric_state, metrics = assess_metrics(checks, state.get(METRICS, {}), readings, now)
        if metrics.outcome == "fail":
            outcome, reasons = "fail", (*metrics.reasons, *inner.reasons)
        else:
            both = {inner.outcome, metrics.outcome}
            outcome = "fail" if "fail" in both else "pass" if both == {"pass"} else "inconclusive"
            reasons = (*inner.reasons, *metrics.reasons)
        new_state = {**inner_state, METRICS: metric_state}
        return new_state, Combined(outcome, reasons, hold=metrics.outcome != "pass")

    return combined


def metric_state(analysis: Mapping[str, Any]) -> Mapping[str, Any]:
    """The metric checks' part of a rollout's stored analysis state."""
    found = analysis.get(METRICS)
    return found if isinstance(found, Mapping) else {}


def _to(m: Measurements | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "revision": m.revision,
        "requests": m.requests,
        "errors": dict(m.errors),
        "latency": {str(k): v for k, v in m.latency.items()},
        "predictions": dict(m.predictions),
    }


def _from(data: dict[str, Any] | None, like: Measurements) -> Measurements | None:
    if not data:
        return None
    return Measurements(
        like.deployment,
        like.revision,
        like.role,
        int(data["requests"]),
        dict(data["errors"]),
        {int(k): int(v) for k, v in data["latency"].items()},
        dict(data["predictions"]),
    )
