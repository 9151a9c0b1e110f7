"""Ending a rollout in the caller's transaction: the core decides (`core.rollout_end`), this
applies it: candidate versions quarantined, candidate off traffic, rollout closed, the event
written and the candidate's data marked for restoring."""

from __future__ import annotations

from datetime import datetime

from mlops.core.rollout_end import RolloutEnd
from mlops.core.rollout_end import end_rollout as decide_end
from mlops.records import Actor, Deployment, ReleaseResult
from mlops.service.restores import mark_restores
from mlops.store.store import Tx


def end_rollout(
    tx: Tx,
    dep: Deployment,
    *,
    status: str,
    quarantine: bool,
    trigger: str,
    reason: str,
    actor: Actor,
    at: datetime,
    evidence: tuple[str, ...] = (),
) -> ReleaseResult:
    """Take the candidate off traffic, close its rollout, and record why.

    `status` is `rolled_back` (its new versions are quarantined when `quarantine`) or
    `aborted` (they stay usable, and warm in the gateways for a while).
    """
    candidate_revision = dep.candidate_revision
    stable_revision = dep.stable_revision
    assert candidate_revision is not None
    assert stable_revision is not None
    candidate = tx.release(dep, candidate_revision)
    assert candidate is not None
    end = decide_end(
        deployment=dep.name,
        candidate_revision=candidate_revision,
        changes=candidate.changes,
        component_count=len(candidate.components),
        status=status,
        quarantine=quarantine,
        reason=reason,
        evidence=evidence,
    )
    quarantined = _quarantine(tx, end, actor, at)
    _close(tx, dep, end, trigger, reason, at)
    event_id = tx.insert_event(
        deployment_id=dep.id,
        action=end.action,
        trigger=trigger,
        actor=actor.name,
        actor_source=actor.source,
        reason=end.reason,
        at=at,
        from_revision=candidate_revision,
        to_revision=stable_revision,
        details=end.details(candidate_revision, quarantined),
    )
    mark_restores(tx, dep, event_id, after=stable_revision, upto=candidate_revision)
    return _result(tx, dep, end, event_id)


def _quarantine(tx: Tx, end: RolloutEnd, actor: Actor, at: datetime) -> list[str]:
    """Quarantine the versions the decision names that are not already; their refs."""
    quarantined = []
    for ref in end.quarantine:
        version = tx.version(ref.model, ref.version)
        if version is not None and not version.quarantined:
            tx.set_version_status(
                version.id, "quarantined", reason=end.quarantine_reason, actor=actor.name, at=at
            )
            quarantined.append(str(ref))
    return quarantined


def _close(
    tx: Tx, dep: Deployment, end: RolloutEnd, trigger: str, reason: str, at: datetime
) -> None:
    """Take the candidate off traffic and close its rollout with the verdict."""
    rollout = tx.active_rollout(dep)
    tx.end_candidate(dep, status=end.status, at=at)
    if rollout is not None:
        tx.update_rollout(
            rollout.id,
            phase=end.status,
            updated_at=at,
            ended_at=at,
            verdict={"trigger": trigger, "reason": reason, "evidence": list(end.evidence)},
        )


def _result(tx: Tx, dep: Deployment, end: RolloutEnd, event_id: int) -> ReleaseResult:
    assert dep.stable_revision is not None
    stable = tx.release(dep, dep.stable_revision)
    assert stable is not None
    return ReleaseResult(
        deployment=dep.name,
        action=end.action,
        changed=True,
        revision=dep.stable_revision,
        from_revision=dep.candidate_revision,
        source_revision=dep.stable_revision,
        components=dict(stable.components),
        changes=[dict(c) for c in end.reverted],
        event_id=event_id,
        reason=end.reason,
    )
