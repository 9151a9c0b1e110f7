"""The audit trail, read: releases with the events that made them, and the events themselves."""

from __future__ import annotations

from mlops.core.limits import HISTORY_LIMIT
from mlops.core.refs import MAX_INT
from mlops.errors import InvalidInput
from mlops.records import Event, ReleaseRecord
from mlops.service.base import ServiceBase, check_limit, deployment_of


class HistoryOps(ServiceBase):
    def events_after(self, after_id: int | None, *, limit: int = 100) -> tuple[list[Event], int]:
        """Events after `after_id` (None: from now on), oldest first, and the id to ask
        after next time."""
        with self.store.read() as tx:
            if after_id is None:
                return [], tx.last_event_id()
            found = tx.events_after(after_id, limit=limit)
        return found, found[-1].id if found else after_id

    def history(
        self,
        deployment: str | None = None,
        *,
        limit: int = HISTORY_LIMIT,
        before: int | None = None,
    ) -> list[ReleaseRecord]:
        """Releases newest first, each with the event that made it; `before` pages back."""
        check_limit(limit)
        if before is not None and not 1 <= before <= MAX_INT:
            raise InvalidInput(f"--before must be a revision from 1 to {MAX_INT}")
        with self.store.read() as tx:
            dep = deployment_of(tx, deployment)
            return tx.history(dep, limit=limit, before=before)

    def events(self, deployment: str | None = None, *, limit: int = 50) -> list[Event]:
        """Events newest first: who did what, when, why (of one deployment, or all)."""
        check_limit(limit)
        with self.store.read() as tx:
            dep = deployment_of(tx, deployment) if deployment else None
            return tx.events(dep, limit=limit)
