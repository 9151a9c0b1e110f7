"""Ending a rollout, decided in the core: what is quarantined, the reason, the event details."""

from __future__ import annotations

import pytest

from mlops.core.refs import ComponentRef
from mlops.core.rollout_end import end_rollout

ONE: list[dict[str, str | None]] = [{"component": "model", "from": "m:1", "to": "m:2"}]
TWO: list[dict[str, str | None]] = [
    {"component": "model", "from": "m:1", "to": "m:2"},
    {"component": "pre", "from": None, "to": "p:1"},
]


def test_a_rollback_quarantines_the_versions_the_candidate_changed_to() -> None:
    end = end_rollout(
        deployment="api",
        candidate_revision=3,
        changes=TWO,
        component_count=2,
        status="rolled_back",
        quarantine=True,
        reason="errors",
        evidence=("e=30",),
    )
    assert end.action == "rollback"
    assert end.quarantine == (ComponentRef("m", 2), ComponentRef("p", 1))
    assert end.quarantine_reason == "rolled back in api revision 3: errors"
    assert end.reason == "errors"  # two components changed: no single one to name
    assert end.reverted == (
        {"component": "model", "from": "m:2", "to": "m:1"},
        {"component": "pre", "from": "p:1", "to": None},
    )
    assert end.details(3, ["m:2"]) == {
        "candidate": 3,
        "components": ["model", "pre"],
        "quarantined": ["m:2"],
        "evidence": ["e=30"],
    }


def test_an_abort_quarantines_nothing() -> None:
    end = end_rollout(
        deployment="api",
        candidate_revision=3,
        changes=ONE,
        component_count=1,
        status="aborted",
        quarantine=False,
        reason="asked",
    )
    assert end.action == "abort"
    assert end.quarantine == ()
    assert end.reason == "asked"  # the only component: nothing to add
    assert end.details(3, [])["component"] == "model"


def test_one_component_of_several_is_named_in_the_reason() -> None:
    end = end_rollout(
        deployment="api",
        candidate_revision=4,
        changes=ONE,
        component_count=3,
        status="rolled_back",
        quarantine=True,
        reason="slow",
    )
    assert end.reason == "slow (the rollout changed model alone: m:1 -> m:2)"
    assert end.quarantine_reason == "rolled back in api revision 4: slow"
    assert end.component == "model"


def test_another_ending_is_refused() -> None:
    with pytest.raises(ValueError, match="rolled_back or aborted"):
        end_rollout(
            deployment="api",
            candidate_revision=2,
            changes=ONE,
            component_count=1,
            status="promoted",
            quarantine=False,
            reason="x",
        )
