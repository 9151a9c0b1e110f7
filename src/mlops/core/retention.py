"""Which data snapshots to keep: a retention policy and the pure decision it makes.

A snapshot is deleted when it is beyond the newest `keep_last` of its resource, or older
than `max_age`, unless it is pinned (the caller pins every snapshot a rollback may still
need, such as the one taken before the stable release's migration). Time is passed in.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mlops.errors import InvalidInput


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int | None = None
    """Keep at most this many snapshots per resource (the newest ones); None: no limit."""
    max_age: timedelta | None = None
    """Delete snapshots older than this; None: no limit. Sets each snapshot's `expires_at`."""

    def __post_init__(self) -> None:
        if self.keep_last is not None and self.keep_last < 1:
            raise InvalidInput(f"keep_last must be at least 1, not {self.keep_last}")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise InvalidInput(f"max_age must be positive, not {self.max_age}")


@dataclass(frozen=True)
class RetainedSnapshot:
    """What the decision needs to know of one snapshot."""

    id: Hashable
    resource: str
    created_at: datetime
    pinned: bool = False


def expires_at(created_at: datetime, policy: RetentionPolicy) -> datetime | None:
    """When a snapshot taken at `created_at` expires by age; None when only a count limits it."""
    return None if policy.max_age is None else created_at + policy.max_age


def decide_expired(
    snapshots: Iterable[RetainedSnapshot], policy: RetentionPolicy, now: datetime
) -> list[Hashable]:
    """The ids of the snapshots to delete, oldest first; pinned snapshots are never chosen."""
    by_resource: dict[str, list[RetainedSnapshot]] = {}
    for snap in snapshots:
        by_resource.setdefault(snap.resource, []).append(snap)
    expired: list[RetainedSnapshot] = []
    for group in by_resource.values():
        newest_first = sorted(group, key=lambda s: s.created_at, reverse=True)
        for rank, snap in enumerate(newest_first):
            if snap.pinned:
                continue
            beyond_count = policy.keep_last is not None and rank >= policy.keep_last
            too_old = policy.max_age is not None and now - snap.created_at > policy.max_age
            if beyond_count or too_old:
                expired.append(snap)
    return [s.id for s in sorted(expired, key=lambda s: s.created_at)]
