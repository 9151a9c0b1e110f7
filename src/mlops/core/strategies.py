"""Rollout strategies as plans of steps, in Argo Rollouts' vocabulary where it fits.

A plan is a tuple of steps the rollout walks through in order:
`SetWeight` sends a share of live traffic to the candidate, `Mirror` copies a share of
requests to it (answers discarded), `Pause` holds until a duration has passed and the
candidate has answered a number of requests — or, with neither, until promoted by hand.
Analysis runs in the background through every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlops.errors import InvalidInput

MAX_PLAN_STEPS = 400
"""The most steps a plan may have: a linear step of at least 0.5 %, a canary of 400 steps. Plans
are checked against it before they are built, so no stored spec can make a huge one."""


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
    weights = math.ceil(round(100 / step_percent, 9))
    if 2 * weights - 1 > MAX_PLAN_STEPS:
        smallest = 100 / ((MAX_PLAN_STEPS + 1) // 2)
        raise InvalidInput(
            f"linear.step: {step_percent:g}% would make a plan of {2 * weights - 1:,} steps "
            f"(at most {MAX_PLAN_STEPS}): use a step of at least {smallest:g}%"
        )
    steps: list[Step] = []
    for index in range(1, weights):
        weight = round(step_percent * index, 6)
        steps += [SetWeight(weight), Pause(seconds=interval_s, requests=requests)]
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
    if len(steps) > MAX_PLAN_STEPS:
        raise InvalidInput(f"a plan of {len(steps):,} steps is too long (at most {MAX_PLAN_STEPS})")
    for index, step in enumerate(steps):
        if isinstance(step, SetWeight | Mirror) and not 0 <= step.percent <= 100:
            raise InvalidInput(f"steps[{index}]: {step.percent}% is not a percentage")
        if isinstance(step, Pause):
            if step.seconds is not None and not 0 <= step.seconds < math.inf:
                raise InvalidInput(f"steps[{index}]: a pause cannot last {step.seconds} s")
            if step.requests is not None and step.requests < 0:
                raise InvalidInput(
                    f"steps[{index}]: a pause cannot wait for {step.requests} requests"
                )
