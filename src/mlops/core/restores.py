"""Which data a rollback puts back: the pure decision, from snapshots and policies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mlops.errors import Conflict


@dataclass(frozen=True)
class TakenSnapshot:
    """A snapshot a rollback may use: taken before release `revision` migrated `resource`."""

    id: int
    resource: str
    revision: int


@dataclass(frozen=True)
class PlannedRestore:
    snapshot: TakenSnapshot
    policy: str
    """`restore` (put the snapshot back) or `keep` (leave the data)."""


def plan_restores(
    undone: Iterable[TakenSnapshot], policies: Mapping[str, str], deployment: str
) -> list[PlannedRestore]:
    """For each resource that the undone releases migrated, the snapshot taken before the first
    of them, with its resource's policy (a resource no longer declared is kept). A `freeze`
    policy refuses the whole rollback."""
    first: dict[str, TakenSnapshot] = {}
    for snap in sorted(undone, key=lambda s: s.revision):
        first.setdefault(snap.resource, snap)
    planned = []
    for name, snap in sorted(first.items()):
        policy = policies.get(name, "keep")
        if policy == "freeze":
            raise Conflict(
                f"data resource {name!r} has policy freeze: release {snap.revision} changed it "
                f"and it cannot go back safely; the rollback is refused and {deployment!r} stays "
                "where it is (change the policy with `mlops data add` to allow it)"
            )
        planned.append(PlannedRestore(snap, policy))
    return planned
