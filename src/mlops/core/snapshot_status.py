"""The life of a snapshot row: its statuses, the moves between them, and the order of restores.

A deploy stores its snapshots `pending` before its migration runs and makes them `ready` with
its release. A rollback marks a ready snapshot `restoring`; so does the recovery of a deploy
that died between its migration and its release. A restore ends `restored`, `restore_failed`,
or (for a dead deploy's snapshot) `abandoned`. Retention turns a ready snapshot `expired`.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlops.errors import IllegalTransition

PENDING = "pending"
"""Taken by a deploy whose migration may be running: its release is not written yet."""
READY = "ready"
RESTORING = "restoring"
RESTORED = "restored"
RESTORE_FAILED = "restore_failed"
EXPIRED = "expired"
"""Deleted by its resource's retention policy; the row stays so a rollback can say so."""
ABANDONED = "abandoned"
"""Its deploy died between migration and release: the snapshot was put back, then deleted."""

STATUSES = (PENDING, READY, RESTORING, RESTORED, RESTORE_FAILED, EXPIRED, ABANDONED)

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({READY, RESTORING}),
    READY: frozenset({RESTORING, EXPIRED}),
    # A restore claimed by a process stays `restoring` (its claim is in the details).
    RESTORING: frozenset({RESTORING, RESTORED, RESTORE_FAILED, ABANDONED}),
    RESTORED: frozenset(),
    RESTORE_FAILED: frozenset(),
    EXPIRED: frozenset(),
    ABANDONED: frozenset(),
}


def move(current: str, to: str) -> str:
    """`to`, when a snapshot in status `current` may move there; else IllegalTransition."""
    if to not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"a snapshot cannot go from {current!r} to {to!r}")
    return to


def restore_order(marked: Iterable[tuple[int, bool]]) -> list[int]:
    """The ids of snapshots marked for restoring, `(id, abandoned)`, in the order to restore
    them: a dead deploy's first, newest first (they are newer than any a rollback restores),
    then the rollbacks', oldest first."""
    return [i for i, abandoned in sorted(marked, key=lambda m: (0, -m[0]) if m[1] else (1, m[0]))]
