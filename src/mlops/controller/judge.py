"""The analysis as the rollout core's judge: a rollout spec's `analysis:` section in, a
pure function over (state, stable increment, candidate increment, elapsed) out."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from mlops.core.analysis import AnalysisSpec, SequentialState, assess
from mlops.core.measure import Measurements, combine
from mlops.core.rollout import Judge
from mlops.errors import InvalidInput


@dataclass(frozen=True)
class Waiting:
    outcome: str = "inconclusive"
    reasons: tuple[str, ...] = ("the candidate has no traffic yet",)


def analysis_spec(section: dict[str, Any]) -> AnalysisSpec:
    """An AnalysisSpec from a rollout spec's `analysis:` mapping, refusing unknown keys."""
    known = {f.name for f in fields(AnalysisSpec)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise InvalidInput(f"invalid rollout spec: analysis.{unknown[0]}: unknown setting")
    values = dict(section)
    if "latency_quantiles" in values:
        values["latency_quantiles"] = tuple(values["latency_quantiles"])
    if "error_kinds" in values:
        values["error_kinds"] = tuple(values["error_kinds"])
    try:
        return AnalysisSpec(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid rollout spec: analysis: {exc}") from None


def analysis_judge(section: dict[str, Any]) -> Judge:
    """The judge for one rollout. Until the candidate answers its first requests, the stable
    release's measurements accumulate as the baseline its latency thresholds are learned from."""
    spec = analysis_spec(section)

    def judge(
        state: dict[str, Any], stable: Measurements, candidate: Measurements, elapsed_s: float
    ) -> tuple[dict[str, Any], Any]:
        if "sequential" not in state:
            before = _from(state.get("baseline"), stable)
            if candidate.requests == 0:
                grown = combine([m for m in (before, stable) if m is not None])
                return {"baseline": _to(grown)}, Waiting()
            # The latency thresholds come only from before the candidate had traffic.
            share = candidate.requests / max(1, candidate.requests + stable.requests)
            sequential = SequentialState.start(spec, before, share)
        else:
            sequential = SequentialState.from_dict(state["sequential"])
        sequential, verdict = assess(spec, sequential, stable, candidate, elapsed_s=elapsed_s)
        return {"sequential": sequential.to_dict()}, verdict

    return judge


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
