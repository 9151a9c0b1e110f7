"""Rollouts and the commands people send them (promote, abort), applied by the controller."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from mlops.core.rollout import CommandKind
from mlops.records import Deployment
from mlops.store import schema as t
from mlops.store.transaction import Transaction


@dataclass(frozen=True, slots=True)
class RolloutRow:
    """A rollout as stored: its spec, where its state machine stands, and its verdict."""

    id: int
    deployment_id: int
    candidate_revision: int
    stable_revision: int
    strategy: str
    spec: dict[str, Any]
    phase: str
    step_index: int
    state: dict[str, Any]
    verdict: dict[str, Any] | None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A command someone queued for a rollout (promote, abort), not yet applied."""

    id: int
    deployment_id: int
    kind: CommandKind
    args: dict[str, Any]
    actor: str
    reason: str | None
    created_at: datetime


ANALYSIS_POINTS_MAX = 720
"""Points kept per rollout: past this, every second older point is dropped, so that a long
rollout keeps its whole story at a coarser grain."""


class RolloutRepo(Transaction):
    def insert_rollout(
        self,
        deployment: Deployment,
        *,
        candidate_revision: int,
        stable_revision: int,
        strategy: str,
        spec: dict[str, Any],
        phase: str,
        step_index: int,
        state: dict[str, Any],
        started_at: datetime,
        updated_at: datetime,
    ) -> int:
        return int(
            self.conn.execute(
                insert(t.rollouts)
                .values(
                    deployment_id=deployment.id,
                    candidate_revision=candidate_revision,
                    stable_revision=stable_revision,
                    strategy=strategy,
                    spec=spec,
                    phase=phase,
                    step_index=step_index,
                    state=state,
                    started_at=started_at,
                    updated_at=updated_at,
                )
                .returning(t.rollouts.c.id)
            ).scalar_one()
        )

    def active_rollout(self, deployment: Deployment) -> RolloutRow | None:
        """The rollout of the deployment's current candidate, if it has one."""
        if deployment.candidate_revision is None:
            return None
        r = t.rollouts
        stmt = (
            select(r)
            .where(
                r.c.deployment_id == deployment.id,
                r.c.candidate_revision == deployment.candidate_revision,
            )
            .order_by(r.c.id.desc())
            .limit(1)
        )
        row = self.conn.execute(stmt).first()
        return RolloutRow(**row._mapping) if row else None

    def update_rollout(
        self,
        rollout_id: int,
        *,
        phase: str | None = None,
        step_index: int | None = None,
        state: dict[str, Any] | None = None,
        verdict: dict[str, Any] | None = None,
        updated_at: datetime | None = None,
        ended_at: datetime | None = None,
    ) -> None:
        """Change the given columns of a rollout; those left None stay as they are."""
        given = {
            "phase": phase,
            "step_index": step_index,
            "state": state,
            "verdict": verdict,
            "updated_at": updated_at,
            "ended_at": ended_at,
        }
        values = {column: value for column, value in given.items() if value is not None}
        if not values:
            return
        self.conn.execute(update(t.rollouts).where(t.rollouts.c.id == rollout_id).values(values))

    def insert_command(
        self,
        deployment: Deployment,
        *,
        kind: str,
        args: dict[str, Any],
        actor: str,
        reason: str | None,
        created_at: datetime,
    ) -> int:
        return int(
            self.conn.execute(
                insert(t.commands)
                .values(
                    deployment_id=deployment.id,
                    kind=kind,
                    args=args,
                    actor=actor,
                    reason=reason,
                    created_at=created_at,
                )
                .returning(t.commands.c.id)
            ).scalar_one()
        )

    def pending_commands(self, deployment_id: int) -> list[CommandRow]:
        c = t.commands
        stmt = (
            select(
                c.c.id, c.c.deployment_id, c.c.kind, c.c.args, c.c.actor, c.c.reason, c.c.created_at
            )
            .where(c.c.deployment_id == deployment_id, c.c.applied_at.is_(None))
            .order_by(c.c.id)
        )
        return [CommandRow(**row._mapping) for row in self.conn.execute(stmt)]

    def mark_command(self, command_id: int, *, at: datetime, result: dict[str, Any]) -> None:
        c = t.commands
        self.conn.execute(
            update(c).where(c.c.id == command_id).values(applied_at=at, result=result)
        )

    def add_analysis_point(self, rollout_id: int, at: datetime, point: dict[str, Any]) -> None:
        a = t.analysis_points
        self.conn.execute(insert(a).values(rollout_id=rollout_id, at=at, point=point))
        count = self.conn.execute(
            select(func.count()).select_from(a).where(a.c.rollout_id == rollout_id)
        ).scalar_one()
        if count <= ANALYSIS_POINTS_MAX:
            return
        ids = self.conn.execute(
            select(a.c.id).where(a.c.rollout_id == rollout_id).order_by(a.c.id)
        ).scalars()
        kept = list(ids)
        dropped = kept[1:-1:2]  # the first and the latest stay
        self.conn.execute(delete(a).where(a.c.id.in_(dropped)))

    def analysis_points(self, rollout_id: int) -> list[tuple[datetime, dict[str, Any]]]:
        a = t.analysis_points
        stmt = select(a.c.at, a.c.point).where(a.c.rollout_id == rollout_id).order_by(a.c.id)
        return [(row.at, row.point) for row in self.conn.execute(stmt)]

    def latest_rollout(self, deployment_id: int) -> RolloutRow | None:
        """The deployment's most recent rollout, in progress or ended."""
        r = t.rollouts
        stmt = select(r).where(r.c.deployment_id == deployment_id).order_by(r.c.id.desc())
        row = self.conn.execute(stmt.limit(1)).first()
        return RolloutRow(**row._mapping) if row else None
