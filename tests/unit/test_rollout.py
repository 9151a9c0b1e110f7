from dataclasses import dataclass
from typing import Any

import pytest

from mlops.core.measure import Measurements
from mlops.core.rollout import (
    Command,
    HealthFailed,
    MakeStable,
    Notify,
    RollBack,
    RolloutSpec,
    RolloutState,
    Route,
    Start,
    Tick,
    hold,
    start_state,
    transition,
)
from mlops.core.strategies import (
    Mirror,
    Pause,
    SetWeight,
    plan_bluegreen,
    plan_canary,
    plan_linear,
    plan_shadow,
)
from mlops.errors import InvalidInput


@dataclass(frozen=True)
class Judged:
    outcome: str
    reasons: tuple[str, ...] = ()


def judge_with(outcome: str, reason: str = "") -> Any:
    def judge(
        state: dict[str, Any], stable: Measurements, candidate: Measurements, elapsed: float
    ) -> Any:
        return {"ticks": state.get("ticks", 0) + 1}, Judged(outcome, (reason,) if reason else ())

    return judge


PASSING = judge_with("inconclusive")
CANARY = RolloutSpec(
    "canary",
    (SetWeight(10), Pause(seconds=30, requests=100), SetWeight(50), Pause(), SetWeight(100)),
)


def tick(now: float, candidate_requests: int = 0) -> Tick:
    return Tick(
        now, Measurements("d", 1, requests=1000), Measurements("d", 2, requests=candidate_requests)
    )


def routes(actions: tuple[Any, ...]) -> list[tuple[float, float]]:
    return [(a.weight, a.mirror) for a in actions if isinstance(a, Route)]


def test_a_canary_walks_its_steps_and_waits_to_be_promoted() -> None:
    state, actions = transition(CANARY, start_state(0), Start(0), PASSING)
    assert routes(actions) == [(10, 0)]
    assert state.step == 1
    state, actions = transition(CANARY, state, tick(10, 500), PASSING)
    assert actions == ()  # 30 s not yet passed
    state, actions = transition(CANARY, state, tick(31, 0), PASSING)
    assert routes(actions) == [(50, 0)]
    assert state.step == 3
    assert any(isinstance(a, Notify) and a.kind == "paused" for a in actions)
    state, actions = transition(CANARY, state, tick(500), PASSING)
    assert actions == ()
    state, actions = transition(CANARY, state, Command(501, "promote"), PASSING)
    assert state.phase == "promoted"
    assert any(isinstance(a, MakeStable) for a in actions)


def test_a_pause_needs_both_its_time_and_its_requests() -> None:
    state, _ = transition(CANARY, start_state(0), Start(0), PASSING)
    state, actions = transition(CANARY, state, tick(40, 60), PASSING)
    assert routes(actions) == []
    state, actions = transition(CANARY, state, tick(41, 40), PASSING)
    assert routes(actions) == [(50, 0)]


def test_failed_analysis_rolls_back_and_quarantines() -> None:
    state, _ = transition(CANARY, start_state(0), Start(0), PASSING)
    state, actions = transition(
        CANARY, state, tick(5, 50), judge_with("fail", "error rate 9% vs 1%")
    )
    assert state.phase == "rolled_back"
    rollback = next(a for a in actions if isinstance(a, RollBack))
    assert (rollback.trigger, rollback.quarantine) == ("analysis", True)
    assert rollback.evidence == ("error rate 9% vs 1%",)
    assert transition(CANARY, state, tick(6), PASSING) == (state, ())


def test_on_failure_pause_holds_the_candidate_off_traffic() -> None:
    spec = RolloutSpec("canary", CANARY.steps, on_failure="pause")
    state, _ = transition(spec, start_state(0), Start(0), PASSING)
    state, actions = transition(spec, state, tick(5, 50), judge_with("fail", "p99 3x"))
    assert state.phase == "paused"
    assert routes(actions) == [(0, 0)]
    state, actions = transition(spec, state, Command(10, "resume"), PASSING)
    assert state.phase == "progressing"
    assert routes(actions)[0] == (10, 0)


def test_a_held_rollback_pauses_off_traffic_once_and_waits_for_a_person() -> None:
    state, _ = transition(CANARY, start_state(0), Start(0), PASSING)
    failed, _ = transition(CANARY, state, tick(5, 50), judge_with("fail", "errors"))
    held, actions = hold(failed, "policy freeze", "analysis: errors")
    assert (held.phase, held.paused_by, held.weight) == ("paused", "failure", 0.0)
    assert routes(actions) == [(0, 0)]
    assert [a.message for a in actions if isinstance(a, Notify)] == [
        "held: analysis: errors; policy freeze"
    ]
    still, actions = transition(CANARY, held, tick(6, 50), judge_with("fail", "errors"))
    assert (still.phase, actions) == ("paused", ())
    promoted, actions = transition(CANARY, held, Command(7, "promote_full"), PASSING)
    assert promoted.phase == "promoted"
    assert any(isinstance(a, MakeStable) for a in actions)


def test_no_traffic_past_the_deadline_fails() -> None:
    spec = RolloutSpec("canary", CANARY.steps, progress_deadline_s=120)
    state, _ = transition(spec, start_state(0), Start(0), PASSING)
    state, _ = transition(spec, state, tick(100, 0), PASSING)
    state, actions = transition(spec, state, tick(130, 0), PASSING)
    assert state.phase == "rolled_back"
    rollback = next(a for a in actions if isinstance(a, RollBack))
    assert rollback.trigger == "deadline"
    assert "0 of 100 candidate requests" in rollback.reason


def test_health_failure_rolls_back_even_with_on_failure_pause() -> None:
    spec = RolloutSpec("canary", CANARY.steps, on_failure="pause")
    state, _ = transition(spec, start_state(0), Start(0), PASSING)
    state, actions = transition(spec, state, HealthFailed(3, "cannot load"), PASSING)
    assert state.phase == "rolled_back"
    assert next(a for a in actions if isinstance(a, RollBack)).trigger == "health"


def test_manual_commands() -> None:
    state, _ = transition(CANARY, start_state(0), Start(0), PASSING)
    paused, actions = transition(CANARY, state, Command(1, "pause"), PASSING)
    assert paused.phase == "paused"
    _, actions = transition(CANARY, paused, tick(100, 1000), PASSING)
    assert routes(actions) == []
    aborted, actions = transition(CANARY, state, Command(2, "abort", "wrong model"), PASSING)
    assert aborted.phase == "aborted"
    assert next(a for a in actions if isinstance(a, RollBack)).quarantine is False
    _, actions = transition(CANARY, state, Command(2, "rollback"), PASSING)
    assert next(a for a in actions if isinstance(a, RollBack)).quarantine is True
    full, actions = transition(CANARY, state, Command(2, "promote_full"), PASSING)
    assert full.phase == "promoted"
    assert routes(actions) == [(100, 0)]


def test_state_round_trips() -> None:
    state, _ = transition(CANARY, start_state(0), Start(0), PASSING)
    state, _ = transition(CANARY, state, tick(3, 7), PASSING)
    assert RolloutState.from_dict(state.to_dict()) == state


def test_plans() -> None:
    assert plan_canary()[-1] == SetWeight(100)
    assert plan_canary((SetWeight(20), Pause(seconds=5)))[-1] == SetWeight(100)
    linear = plan_linear(25, 10)
    assert [s.percent for s in linear if isinstance(s, SetWeight)] == [25, 50, 75, 100]
    assert plan_bluegreen(5, 60) == (SetWeight(95), Pause(seconds=60), SetWeight(100))
    shadow = plan_shadow(50, 30, then="switch")
    assert shadow == (Mirror(50), Pause(seconds=30), Mirror(0), SetWeight(100))
    with pytest.raises(InvalidInput):
        plan_shadow(then="maybe")
    with pytest.raises(InvalidInput):
        plan_canary((SetWeight(150),))


def test_a_shadow_rollout_mirrors_then_switches() -> None:
    spec = RolloutSpec("shadow", plan_shadow(100, 10, then="switch"))
    state, actions = transition(spec, start_state(0), Start(0), PASSING)
    assert routes(actions) == [(0, 100)]
    state, actions = transition(spec, state, tick(11, 20), PASSING)
    assert routes(actions) == [(100, 0)]
    assert state.phase == "promoted"


def test_a_mirror_step_does_not_pass_until_the_candidate_answered_copies() -> None:
    spec = RolloutSpec("shadow", plan_shadow(100, 10, then="switch"), progress_deadline_s=60)
    state, _ = transition(spec, start_state(0), Start(0), PASSING)
    state, actions = transition(spec, state, tick(11, 0), PASSING)
    assert routes(actions) == []
    assert state.mirror == 100
    state, actions = transition(spec, state, tick(12, 5), PASSING)
    assert routes(actions) == [(100, 0)]


def test_bluegreen_can_preview_on_mirrored_traffic_before_the_switch() -> None:
    plan = plan_bluegreen(5, 60, preview=(100, 30, 200))
    assert plan == (
        Mirror(100),
        Pause(seconds=30, requests=200),
        Mirror(0),
        SetWeight(95),
        Pause(seconds=60),
        SetWeight(100),
    )
    spec = RolloutSpec("bluegreen", plan)
    state, actions = transition(spec, start_state(0), Start(0), PASSING)
    assert routes(actions) == [(0, 100)]
    state, actions = transition(spec, state, tick(31, 150), PASSING)
    assert routes(actions) == []  # 30 s passed, but only 150 of 200 mirrored answers
    state, actions = transition(spec, state, tick(32, 60), PASSING)
    assert routes(actions) == [(95, 0)]
    failing = judge_with("fail", "errors: candidate worse")
    early, _ = transition(spec, start_state(0), Start(0), PASSING)
    early, actions = transition(spec, early, tick(5, 40), failing)
    assert early.phase == "rolled_back"
    assert routes(actions) == []
    assert any(isinstance(a, RollBack) and a.trigger == "analysis" for a in actions)


def test_a_timed_pause_does_not_pass_without_candidate_traffic() -> None:
    spec = RolloutSpec(
        "canary", (SetWeight(10), Pause(seconds=5), SetWeight(100)), progress_deadline_s=60
    )
    state, _ = transition(spec, start_state(0), Start(0), PASSING)
    state, actions = transition(spec, state, tick(10, 0), PASSING)
    assert routes(actions) == []  # 10 s passed, but the candidate answered nothing
    state, actions = transition(spec, state, tick(11, 3), PASSING)
    assert state.phase == "promoted"
    stuck, _ = transition(spec, start_state(0), Start(0), PASSING)
    stuck, actions = transition(spec, stuck, tick(61, 0), PASSING)
    assert stuck.phase == "rolled_back"


@dataclass(frozen=True)
class Held:
    outcome: str
    reasons: tuple[str, ...]
    hold: bool


def test_a_judgement_that_holds_keeps_the_pause_until_the_deadline() -> None:
    spec = RolloutSpec(
        "canary", (SetWeight(10), Pause(seconds=5), SetWeight(100)), progress_deadline_s=60
    )

    def judge(hold: bool) -> Any:
        def holding(*_: Any) -> Any:
            return {}, Held("inconclusive", ("metric m: no data",), hold)

        return holding

    state, _ = transition(spec, start_state(0), Start(0), judge(True))
    state, actions = transition(spec, state, tick(10, 50), judge(True))
    assert (actions, state.step) == ((), 1)  # 10 s and traffic, but a metric has no data
    released, _ = transition(spec, state, tick(11, 50), judge(False))
    assert released.phase == "promoted"
    state, actions = transition(spec, state, tick(61, 50), judge(True))
    rollback = next(a for a in actions if isinstance(a, RollBack))
    assert (state.phase, rollback.trigger) == ("rolled_back", "deadline")
    assert rollback.evidence == ("metric m: no data",)
