"""Rollout strategies as plans of steps, in Argo Rollouts' vocabulary where it fits.

A plan is a tuple of steps the rollout walks through in order:
`SetWeight` sends a share of live traffic to the candidate, `Mirror` copies a share of
requests to it (answers discarded), `Pause` holds until a duration has passed and the
candidate has answered a number of requests — or, with neither, until promoted by hand.
Analysis runs in the background through every step.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops.errors import InvalidInput

STRATEGIES = ("direct", "canary", "linear", "bluegreen", "shadow")


@dataclass(frozen=True)
class SetWeight:
    percent: float


@dataclass(frozen=True)
class Mirror:
    percent: float


@dataclass(frozen=True)
class Pause:
    seconds: float | None = None
    requests: int | None = None

    @property
    def until_promoted(self) -> bool:
        return self.seconds is None and self.requests is None


Step = SetWeight | Mirror | Pause

DEFAULT_CANARY = (
    SetWeight(5),
    Pause(seconds=60, requests=500),
    SetWeight(25),
    Pause(seconds=60, requests=1000),
    SetWeight(50),
    Pause(seconds=60, requests=1000),
    SetWeight(100),
)


def plan_canary(steps: tuple[Step, ...] | None = None) -> tuple[Step, ...]:
    plan = steps or DEFAULT_CANARY
    check_plan(plan)
    if not isinstance(plan[-1], SetWeight) or plan[-1].percent != 100:
        plan = (*plan, SetWeight(100))
    return plan


def plan_linear(
    step_percent: float = 10, interval_s: float = 30, requests: int | None = None
) -> tuple[Step, ...]:
    if not 0 < step_percent <= 100:
        raise InvalidInput(f"linear step {step_percent}% is not in (0, 100]")
    steps: list[Step] = []
    weight = step_percent
    while weight < 100:
        steps += [SetWeight(round(weight, 6)), Pause(seconds=interval_s, requests=requests)]
        weight += step_percent
    steps.append(SetWeight(100))
    return tuple(steps)


def plan_bluegreen(
    holdback_percent: float = 5,
    watch_s: float = 60,
    requests: int | None = None,
    preview: tuple[float, float | None, int | None] | None = None,
) -> tuple[Step, ...]:
    """Switch all traffic at once, but keep a small holdback on the previous release while a
    post-promotion window watches, so the comparison stays concurrent; then finish.

    With `preview` (mirror percent, seconds, requests), a pre-promotion analysis first judges
    the candidate on copies of live requests, before any user is served by it."""
    if not 0 <= holdback_percent < 50:
        raise InvalidInput(f"holdback {holdback_percent}% must be in [0, 50)")
    before: tuple[Step, ...] = ()
    if preview is not None:
        percent, seconds, count = preview
        before = (Mirror(percent), Pause(seconds=seconds, requests=count), Mirror(0))
    if holdback_percent == 0:
        return (*before, SetWeight(100), Pause(seconds=watch_s, requests=requests))
    return (
        *before,
        SetWeight(100 - holdback_percent),
        Pause(seconds=watch_s, requests=requests),
        SetWeight(100),
    )


def plan_shadow(
    percent: float = 100, seconds: float = 120, requests: int | None = None, then: str = "canary"
) -> tuple[Step, ...]:
    """Mirror traffic to the candidate with no user impact, then go on as `then` says:
    `canary` (the default canary steps), `switch` (all at once) or `manual` (wait for promote)."""
    watch: tuple[Step, ...] = (
        Mirror(percent),
        Pause(seconds=seconds, requests=requests),
        Mirror(0),
    )
    if then == "canary":
        return watch + DEFAULT_CANARY
    if then == "switch":
        return (*watch, SetWeight(100))
    if then == "manual":
        return (*watch, Pause(), SetWeight(100))
    raise InvalidInput(f"shadow `then` must be canary, switch or manual, not {then!r}")


def check_plan(steps: tuple[Step, ...]) -> None:
    if not steps:
        raise InvalidInput("a rollout needs at least one step")
    for index, step in enumerate(steps):
        if isinstance(step, SetWeight | Mirror) and not 0 <= step.percent <= 100:
            raise InvalidInput(f"steps[{index}]: {step.percent}% is not a percentage")
        if isinstance(step, Pause):
            if step.seconds is not None and step.seconds < 0:
                raise InvalidInput(f"steps[{index}]: a pause cannot last {step.seconds} s")
            if step.requests is not None and step.requests < 0:
                raise InvalidInput(
                    f"steps[{index}]: a pause cannot wait for {step.requests} requests"
                )
