"""The outbox: alerts queued in the transaction of the change they report, claimed under a
lease by a deliverer, and marked delivered or failed (see `mlops.notify.outbox` for the
protocol these statements serve)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, update

from mlops.store import schema as t
from mlops.store.transaction import Transaction


@dataclass(frozen=True)
class OutboxRow:
    """One queued delivery of an alert to one channel; `id` is its delivery id."""

    id: int
    event_id: int
    channel: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


def _to_row(row: Row[Any]) -> OutboxRow:
    m = row._mapping
    return OutboxRow(
        id=m["id"],
        event_id=m["event_id"],
        channel=m["channel"],
        payload=m["payload"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
    )


def _aware(at: datetime) -> datetime:
    # the column's type reads SQLite's naive UTC times back as aware ones; be sure of it
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _live(max_attempts: int) -> Any:
    """Rows still to deliver: not delivered, and not given up after `max_attempts` tries."""
    o = t.outbox
    return and_(o.c.delivered_at.is_(None), o.c.attempts < max_attempts)


class OutboxRepo(Transaction):
    def enqueue_alert(
        self, *, event_id: int, channel: str, payload: dict[str, Any], due: datetime
    ) -> int:
        """Queue one delivery, due at `due`; returns its delivery id."""
        stmt = (
            insert(t.outbox)
            .values(
                event_id=event_id, channel=channel, payload=payload, attempts=0, next_attempt_at=due
            )
            .returning(t.outbox.c.id)
        )
        return int(self.conn.execute(stmt).scalar_one())

    def undelivered_rows(self, *, limit: int | None = None) -> list[OutboxRow]:
        """Rows not delivered yet, oldest first: waiting ones and those that gave up."""
        o = t.outbox
        stmt = select(o).where(o.c.delivered_at.is_(None)).order_by(o.c.id).limit(limit)
        return [_to_row(row) for row in self.conn.execute(stmt)]

    def prune_outbox(self, *, before: datetime) -> int:
        """Delete rows delivered before `before`; returns how many."""
        o = t.outbox
        stmt = delete(o).where(o.c.delivered_at.is_not(None), o.c.delivered_at < before)
        return int(self.conn.execute(stmt).rowcount)

    def due_rows(
        self, *, channels: Collection[str], now: datetime, limit: int, max_attempts: int
    ) -> list[OutboxRow]:
        """Live rows of `channels` due by `now`, oldest first; on PostgreSQL each is locked,
        and rows another transaction holds are skipped."""
        o = t.outbox
        stmt = (
            select(o)
            .where(_live(max_attempts), o.c.next_attempt_at <= now, o.c.channel.in_(channels))
            .order_by(o.c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return [_to_row(row) for row in self.conn.execute(stmt)]

    def first_live_ids(
        self, *, channels: Collection[str], excluding: Sequence[int], max_attempts: int
    ) -> dict[str, int]:
        """Per channel, the id of its oldest live row that is not among `excluding`."""
        o = t.outbox
        stmt = (
            select(o.c.channel, func.min(o.c.id))
            .where(_live(max_attempts), o.c.channel.in_(channels), o.c.id.not_in(excluding))
            .group_by(o.c.channel)
        )
        return {channel: first for channel, first in self.conn.execute(stmt)}

    def lease_rows(self, ids: Sequence[int], *, until: datetime) -> None:
        """Hold rows until `until`: other deliverers find them not yet due."""
        o = t.outbox
        self.conn.execute(update(o).where(o.c.id.in_(ids)).values(next_attempt_at=until))

    def mark_delivered(self, ids: Sequence[int], *, at: datetime) -> None:
        o = t.outbox
        self.conn.execute(
            update(o)
            .where(o.c.id.in_(ids), o.c.delivered_at.is_(None))
            .values(delivered_at=at, attempts=o.c.attempts + 1, last_error=None)
        )

    def mark_failed(
        self, row_id: int, *, leased_until: datetime, error: str, retry_at: datetime
    ) -> None:
        """Count a failed try, if the row is still held by the lease that ends `leased_until`."""
        o = t.outbox
        self.conn.execute(
            update(o)
            .where(o.c.id == row_id, self._held(leased_until))
            .values(attempts=o.c.attempts + 1, last_error=error, next_attempt_at=retry_at)
        )

    def hand_back(self, ids: Sequence[int], *, leased_until: datetime, at: datetime) -> None:
        """Make untried rows due at `at`, those still held by the lease ending `leased_until`."""
        o = t.outbox
        self.conn.execute(
            update(o).where(o.c.id.in_(ids), self._held(leased_until)).values(next_attempt_at=at)
        )

    @staticmethod
    def _held(leased_until: datetime) -> Any:
        # If the lease ran out and another deliverer took the row, its outcome counts.
        o = t.outbox
        return and_(o.c.delivered_at.is_(None), o.c.next_attempt_at == leased_until)

    def next_due(self, *, channels: Collection[str], max_attempts: int) -> datetime | None:
        """When the first row of these channels falls due: a channel's later rows wait behind
        its oldest, so the oldest live row of each channel is the one that says when."""
        o = t.outbox
        heads = (
            select(func.min(o.c.id))
            .where(_live(max_attempts), o.c.channel.in_(channels))
            .group_by(o.c.channel)
        )
        at = self.conn.execute(
            select(func.min(o.c.next_attempt_at)).where(o.c.id.in_(heads.scalar_subquery()))
        ).scalar_one_or_none()
        return None if at is None else _aware(at)

    def undelivered_channels(self) -> set[str]:
        """The channels that some outbox row still waits on."""
        o = t.outbox
        stmt = select(o.c.channel).where(o.c.delivered_at.is_(None)).distinct()
        return {row[0] for row in self.conn.execute(stmt)}

    def specs_with_undelivered(self, channels: Sequence[str]) -> list[dict[str, Any]]:
        """The specs of the rollouts whose alerts wait in the outbox on one of `channels`.
        An alert's event names its rollout's candidate as its from or its to revision."""
        o, e, r = t.outbox, t.events, t.rollouts
        waiting = (
            select(r.c.id)
            .join(e, e.c.deployment_id == r.c.deployment_id)
            .join(o, o.c.event_id == e.c.id)
            .where(
                o.c.delivered_at.is_(None),
                o.c.channel.in_(channels),
                or_(
                    r.c.candidate_revision == e.c.from_revision,
                    r.c.candidate_revision == e.c.to_revision,
                ),
            )
        )
        stmt = select(r.c.spec).where(r.c.id.in_(waiting)).order_by(r.c.id)
        return [row[0] for row in self.conn.execute(stmt)]
