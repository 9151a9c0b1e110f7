"""The rollout state machine: `transition(spec, state, event) -> (state, actions)`.

Pure: time comes in with each event, measurements are the increments since the last tick,
and what must happen (route traffic, promote, roll back, notify) goes out as actions for
the shell to carry out in one transaction with the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from mlops.core.measure import Measurements
from mlops.core.strategies import Mirror, Pause, SetWeight, Step

Phase = Literal["progressing", "paused", "promoted", "rolled_back", "aborted"]
ACTIVE: frozenset[str] = frozenset({"progressing", "paused"})


class Judgement(Protocol):
    """A judge's verdict. It may also have `hold: bool`; when true, the current pause step does
    not complete (a metric without data is never success: the progress deadline decides)."""

    outcome: str
    """`pass`, `fail` or `inconclusive`."""
    reasons: tuple[str, ...]


Judge = Callable[
    [dict[str, Any], Measurements, Measurements, float], tuple[dict[str, Any], Judgement]
]
"""(analysis state, stable and candidate increments, seconds since start) -> (state, judgement)."""


@dataclass(frozen=True)
class RolloutSpec:
    strategy: str
    steps: tuple[Step, ...]
    progress_deadline_s: float = 600.0
    on_failure: Literal["rollback", "pause"] = "rollback"


@dataclass(frozen=True)
class RolloutState:
    phase: Phase
    step: int
    started_at: float
    step_started_at: float
    step_requests: int = 0
    weight: float = 0.0
    mirror: float = 0.0
    analysis: dict[str, Any] = field(default_factory=dict)
    outcome: str = "inconclusive"
    reasons: tuple[str, ...] = ()
    paused_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "step": self.step,
            "started_at": self.started_at,
            "step_started_at": self.step_started_at,
            "step_requests": self.step_requests,
            "weight": self.weight,
            "mirror": self.mirror,
            "analysis": self.analysis,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "paused_by": self.paused_by,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutState:
        return cls(
            phase=data["phase"],
            step=int(data["step"]),
            started_at=float(data["started_at"]),
            step_started_at=float(data["step_started_at"]),
            step_requests=int(data["step_requests"]),
            weight=float(data["weight"]),
            mirror=float(data["mirror"]),
            analysis=dict(data["analysis"]),
            outcome=str(data["outcome"]),
            reasons=tuple(data["reasons"]),
            paused_by=data["paused_by"],
        )


# events


@dataclass(frozen=True)
class Start:
    now: float


@dataclass(frozen=True)
class Tick:
    now: float
    stable: Measurements
    candidate: Measurements


CommandKind = Literal["promote", "promote_full", "abort", "pause", "resume", "rollback"]


@dataclass(frozen=True)
class Command:
    now: float
    kind: CommandKind
    reason: str | None = None


@dataclass(frozen=True)
class HealthFailed:
    now: float
    reason: str


Event = Start | Tick | Command | HealthFailed

# actions


@dataclass(frozen=True)
class Route:
    weight: float
    mirror: float


@dataclass(frozen=True)
class MakeStable:
    reason: str


@dataclass(frozen=True)
class RollBack:
    trigger: Literal["manual", "analysis", "health", "deadline"]
    reason: str
    quarantine: bool
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notify:
    kind: str
    message: str


Action = Route | MakeStable | RollBack | Notify


def start_state(now: float) -> RolloutState:
    return RolloutState(phase="progressing", step=0, started_at=now, step_started_at=now)


def transition(
    spec: RolloutSpec, state: RolloutState, event: Event, judge: Judge
) -> tuple[RolloutState, tuple[Action, ...]]:
    """The next state of a rollout and what the shell must do, for one event."""
    if state.phase not in ACTIVE:
        return state, ()
    if isinstance(event, Start):
        return _advance(spec, replace(state, step_started_at=event.now), event.now, ())
    if isinstance(event, HealthFailed):
        return _fail(
            spec, state, "health", f"the candidate failed its health check: {event.reason}", ()
        )
    if isinstance(event, Command):
        return _command(spec, state, event)
    return _tick(spec, state, event, judge)


def _tick(
    spec: RolloutSpec, state: RolloutState, tick: Tick, judge: Judge
) -> tuple[RolloutState, tuple[Action, ...]]:
    analysis, judgement = judge(
        state.analysis, tick.stable, tick.candidate, tick.now - state.started_at
    )
    state = replace(
        state,
        analysis=analysis,
        outcome=judgement.outcome,
        reasons=tuple(judgement.reasons),
        step_requests=state.step_requests + tick.candidate.judged,
    )
    if judgement.outcome == "fail":
        failed = [r for r in judgement.reasons if "fail" in r.lower()] or list(judgement.reasons)
        reason = failed[0] if failed else "analysis failed"
        return _fail(spec, state, "analysis", reason, tuple(judgement.reasons))
    if state.phase == "paused":
        return state, ()
    step = spec.steps[state.step] if state.step < len(spec.steps) else None
    waited = tick.now - state.step_started_at
    if isinstance(step, Pause) and not step.until_promoted and waited > spec.progress_deadline_s:
        missing = []
        if step.requests is not None and state.step_requests < step.requests:
            missing.append(f"{state.step_requests} of {step.requests} candidate requests")
        reason = f"no progress for {waited:.0f} s (deadline {spec.progress_deadline_s:.0f} s)" + (
            f": {', '.join(missing)}" if missing else ""
        )
        return _fail(spec, state, "deadline", reason, tuple(judgement.reasons))
    return _advance(spec, state, tick.now, (), hold=bool(getattr(judgement, "hold", False)))


def _step_done(step: Step, state: RolloutState, now: float, hold: bool) -> bool:
    if not isinstance(step, Pause):
        return True
    if step.until_promoted or hold:
        return False
    if step.seconds is not None and now - state.step_started_at < step.seconds:
        return False
    if (state.weight > 0 or state.mirror > 0) and state.step_requests == 0:
        return False  # no data is never success: the progress deadline decides
    return step.requests is None or state.step_requests >= step.requests


def _advance(
    spec: RolloutSpec,
    state: RolloutState,
    now: float,
    actions: tuple[Action, ...],
    *,
    hold: bool = False,
) -> tuple[RolloutState, tuple[Action, ...]]:
    """Walk every step that is complete now; apply weight and mirror steps as they pass."""
    out = list(actions)
    weight, mirror = state.weight, state.mirror
    while state.step < len(spec.steps):
        step = spec.steps[state.step]
        if isinstance(step, SetWeight):
            weight = step.percent
        elif isinstance(step, Mirror):
            mirror = step.percent
        elif not _step_done(step, state, now, hold):
            if isinstance(step, Pause) and step.until_promoted and state.paused_by != "step":
                state = replace(state, paused_by="step")
                out.append(
                    Notify(
                        "paused", f"step {state.step + 1}/{len(spec.steps)}: waiting to be promoted"
                    )
                )
            break
        state = replace(
            state, step=state.step + 1, step_started_at=now, step_requests=0, paused_by=None
        )
    if (weight, mirror) != (state.weight, state.mirror):
        out.append(Route(weight, mirror))
        state = replace(state, weight=weight, mirror=mirror)
    if state.step >= len(spec.steps):
        out.append(MakeStable(f"all {len(spec.steps)} steps passed"))
        out.append(Notify("promoted", f"promoted after {len(spec.steps)} steps"))
        state = replace(state, phase="promoted", weight=100.0, mirror=0.0)
    return state, tuple(out)


def _fail(
    spec: RolloutSpec,
    state: RolloutState,
    trigger: Literal["analysis", "health", "deadline"],
    reason: str,
    evidence: tuple[str, ...],
) -> tuple[RolloutState, tuple[Action, ...]]:
    text = "; ".join((reason, *evidence))
    if state.phase == "paused" and state.paused_by == "failure":
        return state, ()  # paused (or held) on a failure already: a person decides
    if spec.on_failure == "pause" and trigger != "health":
        paused = replace(state, phase="paused", paused_by="failure", weight=0.0, mirror=0.0)
        return paused, (Route(0.0, 0.0), Notify("paused", f"{trigger}: {text}"))
    rolled = replace(
        state, phase="rolled_back", weight=0.0, mirror=0.0, reasons=(reason, *evidence)
    )
    return rolled, (
        RollBack(trigger, reason, quarantine=True, evidence=evidence),
        Notify("rolled_back", f"{trigger}: {text}"),
    )


def hold(state: RolloutState, refused: str, reason: str) -> tuple[RolloutState, tuple[Action, ...]]:
    """A rollback that the data's policy refuses (or whose snapshot is gone): the candidate is
    taken off traffic and the rollout waits, paused, for a person to promote it, or to roll it
    back once the policy allows."""
    held = replace(state, phase="paused", paused_by="failure", weight=0.0, mirror=0.0)
    return held, (Route(0.0, 0.0), Notify("paused", f"held: {reason}; {refused}"))


def _command(
    spec: RolloutSpec, state: RolloutState, command: Command
) -> tuple[RolloutState, tuple[Action, ...]]:
    why = f": {command.reason}" if command.reason else ""
    if command.kind == "abort":
        aborted = replace(state, phase="aborted", weight=0.0, mirror=0.0)
        return aborted, (
            RollBack("manual", f"aborted{why}", quarantine=False),
            Notify("aborted", f"aborted by hand{why}"),
        )
    if command.kind == "rollback":
        rolled = replace(state, phase="rolled_back", weight=0.0, mirror=0.0)
        return rolled, (
            RollBack("manual", f"rolled back by hand{why}", quarantine=True),
            Notify("rolled_back", f"rolled back by hand{why}"),
        )
    if command.kind == "pause":
        if state.phase == "paused":
            return state, ()
        return replace(state, phase="paused", paused_by="manual"), (
            Notify("paused", f"paused by hand{why}"),
        )
    if command.kind == "resume":
        if state.phase != "paused":
            return state, ()
        resumed = replace(state, phase="progressing", paused_by=None, step_started_at=command.now)
        restored: tuple[Action, ...] = ()
        if state.paused_by == "failure":
            weight, mirror = _weights_at(spec, state.step)
            resumed = replace(resumed, weight=weight, mirror=mirror)
            restored = (Route(weight, mirror),)
        return _advance(spec, resumed, command.now, (*restored, Notify("resumed", f"resumed{why}")))
    if command.kind == "promote_full":
        promoted = replace(state, phase="promoted", weight=100.0, mirror=0.0)
        return promoted, (
            Route(100.0, 0.0),
            MakeStable(f"promoted by hand, skipping the remaining steps{why}"),
            Notify("promoted", f"promoted by hand{why}"),
        )
    # promote: finish the current step now
    skipped = replace(
        state,
        phase="progressing",
        paused_by=None,
        step=state.step + 1,
        step_started_at=command.now,
        step_requests=0,
    )
    return _advance(
        spec,
        skipped,
        command.now,
        (Notify("step", f"step {state.step + 1} promoted by hand{why}"),),
    )


def _weights_at(spec: RolloutSpec, step: int) -> tuple[float, float]:
    """The candidate's weight and mirror share in force at `step`, replaying the plan."""
    weight = mirror = 0.0
    for s in spec.steps[:step]:
        if isinstance(s, SetWeight):
            weight = s.percent
        elif isinstance(s, Mirror):
            mirror = s.percent
    return weight, mirror
