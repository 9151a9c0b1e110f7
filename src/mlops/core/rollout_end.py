"""Ending a rollout: what a rollback or an abort of the candidate does, decided from the
candidate's changes. The service reads the candidate, asks `end_rollout`, and applies it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops.core.refs import ComponentRef, parse_ref

ENDINGS = {"rolled_back": "rollback", "aborted": "abort"}
"""How a rollout ends (its phase) and the action its event records."""


@dataclass(frozen=True)
class RolloutEnd:
    status: str
    """`rolled_back` or `aborted`."""
    action: str
    """The event's action: `rollback` or `abort`."""
    quarantine: tuple[ComponentRef, ...]
    """The versions the candidate changed to, to quarantine unless they are already."""
    quarantine_reason: str
    reason: str
    """The event's reason: the given one, naming the component when one of several changed."""
    components: tuple[str | None, ...]
    """The components the candidate changed."""
    component: str | None
    """The one component it changed, when it changed one."""
    reverted: tuple[Mapping[str, Any], ...]
    """The candidate's changes, undone (from and to swapped)."""
    evidence: tuple[str, ...]

    def details(self, candidate_revision: int, quarantined: Sequence[str]) -> dict[str, Any]:
        """The event's details, with the versions that were quarantined."""
        details: dict[str, Any] = {
            "candidate": candidate_revision,
            "components": list(self.components),
            "quarantined": list(quarantined),
            "evidence": list(self.evidence),
        }
        if len(self.components) == 1:
            details["component"] = self.component
        return details


def end_rollout(
    *,
    deployment: str,
    candidate_revision: int,
    changes: Sequence[Mapping[str, Any]],
    component_count: int,
    status: str,
    quarantine: bool,
    reason: str,
    evidence: tuple[str, ...] = (),
) -> RolloutEnd:
    """Take candidate `candidate_revision` of `deployment` off traffic as `status`.

    `rolled_back` quarantines the versions it changed to when `quarantine`; `aborted` leaves
    them usable. `changes` are the candidate's (`component`, `from`, `to`); `component_count`
    is how many components the candidate has.
    """
    if status not in ENDINGS:
        raise ValueError(f"a rollout ends rolled_back or aborted, not {status!r}")
    refs = tuple(parse_ref(c["to"]) for c in changes if c.get("to")) if quarantine else ()
    quarantine_reason = (
        f"{status.replace('_', ' ')} in {deployment} revision {candidate_revision}: {reason}"
    )
    only = changes[0] if len(changes) == 1 else None
    if only is not None and component_count > 1:
        # One component of several changed: the reason (and the alert made from it) says
        # which, so nobody has to compare the two releases to find it.
        reason = (
            f"{reason} (the rollout changed {only.get('component')} alone: "
            f"{only.get('from') or '-'} -> {only.get('to') or '-'})"
        )
    return RolloutEnd(
        status=status,
        action=ENDINGS[status],
        quarantine=refs,
        quarantine_reason=quarantine_reason,
        reason=reason,
        components=tuple(c.get("component") for c in changes),
        component=only.get("component") if only is not None else None,
        reverted=tuple(
            {"component": c.get("component"), "from": c.get("to"), "to": c.get("from")}
            for c in changes
        ),
        evidence=evidence,
    )
