"""Events: the append-only record of who did what, when and why, to which deployment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from mlops.records import Deployment, Event
from mlops.store import schema as t
from mlops.store.transaction import Transaction

ACTOR_SOURCE_KEY = "actor_source"
"""Kept in an event's `details` column (no schema change), read back as `Event.actor_source`."""


def to_event(row: Row[Any], deployment: str | None) -> Event:
    m = row._mapping
    return Event(
        id=m["id"],
        deployment=deployment,
        action=m["action"],
        trigger=m["trigger"],
        actor=m["actor"],
        reason=m["reason"],
        from_revision=m["from_revision"],
        to_revision=m["to_revision"],
        details={k: v for k, v in (m["details"] or {}).items() if k != ACTOR_SOURCE_KEY},
        at=m["at"],
        actor_source=(m["details"] or {}).get(ACTOR_SOURCE_KEY),
    )


class EventRepo(Transaction):
    def insert_event(
        self,
        *,
        deployment_id: int | None,
        action: str,
        trigger: str,
        actor: str,
        reason: str | None,
        at: datetime,
        from_revision: int | None = None,
        to_revision: int | None = None,
        details: dict[str, Any] | None = None,
        actor_source: str | None = None,
    ) -> int:
        """Record an event; `actor_source` says how `actor` is known (records.ACTOR_SOURCES)."""
        if actor_source is not None:
            details = {**(details or {}), ACTOR_SOURCE_KEY: actor_source}
        return int(
            self.conn.execute(
                insert(t.events)
                .values(
                    deployment_id=deployment_id,
                    action=action,
                    trigger=trigger,
                    actor=actor,
                    reason=reason,
                    from_revision=from_revision,
                    to_revision=to_revision,
                    details=details or {},
                    at=at,
                )
                .returning(t.events.c.id)
            ).scalar_one()
        )

    def update_event_details(self, event_id: int, more: dict[str, Any]) -> None:
        found = self.event_details(event_id)
        e = t.events
        self.conn.execute(update(e).where(e.c.id == event_id).values(details={**found, **more}))

    def event_details(self, event_id: int) -> dict[str, Any]:
        e = t.events
        found = self.conn.execute(select(e.c.details).where(e.c.id == event_id)).scalar_one()
        return dict(found or {})

    def event_deployment_id(self, event_id: int) -> int | None:
        """The deployment an event is about (None for registry events, or no such event)."""
        e = t.events
        stmt = select(e.c.deployment_id).where(e.c.id == event_id)
        found: int | None = self.conn.execute(stmt).scalar_one_or_none()
        return found

    def events_after(self, after_id: int, *, limit: int) -> list[Event]:
        """Events with an id above `after_id`, oldest first (a stream's next page)."""
        e, d = t.events, t.deployments
        stmt = (
            select(e, d.c.name.label("deployment_name"))
            .outerjoin(d, d.c.id == e.c.deployment_id)
            .where(e.c.id > after_id)
            .order_by(e.c.id)
            .limit(limit)
        )
        return [to_event(row, row.deployment_name) for row in self.conn.execute(stmt)]

    def last_event_id(self) -> int:
        found = self.conn.execute(select(func.max(t.events.c.id))).scalar_one_or_none()
        return int(found or 0)

    def events(self, deployment: Deployment | None, *, limit: int) -> list[Event]:
        """Events newest first: of one deployment, or of all (each with its deployment's name;
        None for the registry's and the tokens')."""
        e, d = t.events, t.deployments
        if deployment is not None:
            stmt = select(e).where(e.c.deployment_id == deployment.id)
            stmt = stmt.order_by(e.c.id.desc()).limit(limit)
            return [to_event(row, deployment.name) for row in self.conn.execute(stmt)]
        joined = select(e, d.c.name.label("deployment_name")).outerjoin(
            d, d.c.id == e.c.deployment_id
        )
        rows = self.conn.execute(joined.order_by(e.c.id.desc()).limit(limit))
        return [to_event(row, row.deployment_name) for row in rows]
