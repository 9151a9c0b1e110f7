"""Carrying out the rollout state machine's actions in the controller's transaction: routes
set, the candidate made stable or ended, each with its event and its alert queued in the outbox
(delivered after the commit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mlops.core.rollout import Action, MakeStable, RollBack, Route
from mlops.core.routing import Split
from mlops.errors import Conflict, SnapshotMissing
from mlops.notify import Alert, enqueue, subscriptions_for
from mlops.records import CONTROLLER, Actor, Deployment
from mlops.service.ending import end_rollout
from mlops.service.restores import planned_restores
from mlops.store.rollouts import RolloutRow
from mlops.store.store import Tx

if TYPE_CHECKING:
    from mlops.rollout_spec import NotifySpec

RECORDED_KINDS = frozenset({"promoted", "rolled_back", "aborted"})


@dataclass(frozen=True)
class Acting:
    """Where an action is carried out: the transaction, the rollout, and who caused it (a
    person's command gives trigger `manual`)."""

    tx: Tx
    dep: Deployment
    rollout: RolloutRow
    now: float
    entries: list[NotifySpec]
    keep_warm_s: float
    actor: Actor

    @property
    def at(self) -> datetime:
        return at_time(self.now)

    @property
    def trigger(self) -> str:
        return "analysis" if self.actor == CONTROLLER else "manual"

    @property
    def stable(self) -> int:
        return int(self.rollout.stable_revision)

    @property
    def candidate(self) -> int:
        return int(self.rollout.candidate_revision)


def execute(acting: Acting, action: Action) -> str:
    """Carry out one action; a line that says what changed ("" when nothing to say)."""
    if isinstance(action, Route):
        return _route(acting, action)
    if isinstance(action, MakeStable):
        return _make_stable(acting, action)
    if isinstance(action, RollBack):
        return _roll_back(acting, action)
    if action.kind not in RECORDED_KINDS:  # a promote / rollback / abort has its own event
        _announce(acting, f"rollout_{action.kind}", action.kind, action.message)
    return ""


def _route(acting: Acting, action: Route) -> str:
    shadows = ((acting.candidate, action.mirror),) if action.mirror > 0 else ()
    split = Split(
        ((acting.stable, 100.0 - action.weight), (acting.candidate, action.weight)), shadows
    )
    acting.tx.set_routes(acting.dep, split.to_dict(), acting.at)
    return (
        f"{acting.dep.name}: candidate {acting.candidate} at {action.weight:g}% "
        f"(mirror {action.mirror:g}%)"
    )


def _make_stable(acting: Acting, action: MakeStable) -> str:
    tx, at = acting.tx, acting.at
    tx.make_stable(acting.dep, acting.candidate, at=at, warm_until=acting.now + acting.keep_warm_s)
    tx.update_rollout(
        acting.rollout.id, phase="promoted", ended_at=at, verdict={"reason": action.reason}
    )
    _announce(acting, "promote", "promoted", action.reason)
    return f"{acting.dep.name}: revision {acting.candidate} promoted ({action.reason})"


def _roll_back(acting: Acting, action: RollBack) -> str:
    status = "rolled_back" if action.quarantine else "aborted"
    ended_with = end_rollout(
        acting.tx,
        acting.dep,
        status=status,
        quarantine=action.quarantine,
        trigger=action.trigger,
        reason=action.reason,
        actor=acting.actor,
        at=acting.at,
        evidence=action.evidence,
    )
    assert ended_with.event_id is not None
    queue_alert(
        acting.tx,
        acting.entries,
        ended_with.event_id,
        status,
        acting.dep.name,
        action.trigger,
        ended_with.reason or action.reason,
        acting.at,
        acting.candidate,
        acting.stable,
        action.evidence,
        acting.actor,
    )
    ended = status.replace("_", " ")
    why = f"{action.trigger}: {action.reason}"
    return f"{acting.dep.name}: revision {acting.candidate} {ended} ({why})"


def refusal(tx: Tx, dep: Deployment, rollout: RolloutRow) -> str | None:
    """Why the data's policy refuses to roll this rollout back (None when it allows it)."""
    try:
        planned_restores(tx, dep, after=rollout.stable_revision, upto=rollout.candidate_revision)
    except (Conflict, SnapshotMissing) as exc:
        return str(exc)
    return None


def _announce(acting: Acting, action: str, kind: str, reason: str) -> None:
    """Record a rollout's event (stable -> candidate) and queue its alert."""
    event_id = acting.tx.insert_event(
        deployment_id=acting.dep.id,
        action=action,
        trigger=acting.trigger,
        actor=acting.actor.name,
        actor_source=acting.actor.source,
        reason=reason,
        at=acting.at,
        from_revision=acting.stable,
        to_revision=acting.candidate,
    )
    queue_alert(
        acting.tx,
        acting.entries,
        event_id,
        kind,
        acting.dep.name,
        acting.trigger,
        reason,
        acting.at,
        acting.stable,
        acting.candidate,
        actor=acting.actor,
    )


def queue_alert(
    tx: Tx,
    entries: list[NotifySpec],
    event_id: int,
    kind: str,
    deployment: str,
    trigger: str,
    reason: str,
    at: datetime,
    from_revision: int,
    to_revision: int,
    evidence: tuple[str, ...] = (),
    actor: Actor = CONTROLLER,
) -> None:
    """Queue the alert in the outbox, in the transaction of the change it reports."""
    channels = subscriptions_for(entries, deployment, kind)
    if channels:
        alert = Alert(
            kind,
            deployment,
            trigger,
            reason,
            at,
            from_revision=from_revision,
            to_revision=to_revision,
            evidence=evidence,
            actor=actor.name,
            details={} if actor == CONTROLLER else {"actor_source": actor.source},
        )
        enqueue(tx, event_id, channels, alert)


def at_time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
