"""The snapshot status machine: the moves a snapshot row may make, and the order of restores."""

from __future__ import annotations

import pytest

from mlops.core.snapshot_status import (
    ABANDONED,
    EXPIRED,
    PENDING,
    READY,
    RESTORE_FAILED,
    RESTORED,
    RESTORING,
    STATUSES,
    TRANSITIONS,
    move,
    restore_order,
)
from mlops.errors import IllegalTransition


@pytest.mark.parametrize(
    ("current", "to"),
    [
        (PENDING, READY),  # the deploy wrote its release
        (PENDING, RESTORING),  # the deploy died: its data is put back
        (READY, RESTORING),  # a rollback restores it
        (READY, EXPIRED),  # retention deleted it
        (RESTORING, RESTORING),  # a process claimed it
        (RESTORING, RESTORED),
        (RESTORING, RESTORE_FAILED),
        (RESTORING, ABANDONED),
    ],
)
def test_allowed_moves(current: str, to: str) -> None:
    assert move(current, to) == to


@pytest.mark.parametrize(
    ("current", "to"),
    [
        (EXPIRED, RESTORING),  # its files are gone
        (RESTORED, RESTORING),
        (READY, PENDING),
        (PENDING, EXPIRED),
        (ABANDONED, READY),
        ("unknown", READY),
    ],
)
def test_illegal_moves_raise(current: str, to: str) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current!r} to {to!r}"):
        move(current, to)


def test_every_status_has_its_moves_and_ends_are_terminal() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    assert all(to in STATUSES for moves in TRANSITIONS.values() for to in moves)
    for end in (RESTORED, RESTORE_FAILED, EXPIRED, ABANDONED):
        assert not TRANSITIONS[end]


def test_a_dead_deploys_snapshots_are_restored_first_newest_first() -> None:
    marked = [(3, False), (7, True), (1, False), (9, True)]
    assert restore_order(marked) == [9, 7, 1, 3]
    assert restore_order([]) == []
