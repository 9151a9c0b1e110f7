"""Deployments: the named endpoints, their revision counters and their live routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update

from mlops.records import Deployment
from mlops.store import schema as t
from mlops.store.changes import ChangeRepo


def to_deployment(row: Row[Any]) -> Deployment:
    m = row._mapping
    return Deployment(
        id=m["id"],
        name=m["name"],
        latest_revision=m["latest_revision"],
        stable_revision=m["stable_revision"],
        candidate_revision=m["candidate_revision"],
        phase=m["phase"],
        data_policy=m["data_policy"],
        config=m["config"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        routes=m["routes"],
    )


def deployment_stmt(name: str) -> Any:
    """One deployment by name (on the rollback path)."""
    return select(t.deployments).where(t.deployments.c.name == name)


class DeploymentRepo(ChangeRepo):
    def deployment(self, name: str, *, lock: bool = False) -> Deployment | None:
        stmt = deployment_stmt(name)
        row = self.conn.execute(self._lock(stmt) if lock else stmt).first()
        return to_deployment(row) if row else None

    def create_deployment(self, name: str, at: datetime) -> Deployment:
        self.conn.execute(
            self._insert(t.deployments)
            .values(
                name=name,
                latest_revision=0,
                phase="idle",
                data_policy="restore",
                config={},
                created_at=at,
                updated_at=at,
            )
            .on_conflict_do_nothing(index_elements=["name"])
        )
        created = self.deployment(name, lock=True)
        assert created is not None
        return created

    def deployments(self, limit: int | None = 2) -> list[Deployment]:
        """Deployments by name: the first `limit` of them, or all with None."""
        stmt = select(t.deployments).order_by(t.deployments.c.name).limit(limit)
        return [to_deployment(row) for row in self.conn.execute(stmt)]

    def set_routes(
        self, deployment: Deployment, routes: dict[str, Any] | None, at: datetime
    ) -> None:
        self.conn.execute(
            update(t.deployments)
            .where(t.deployments.c.id == deployment.id)
            .values(routes=routes, updated_at=at)
        )
        self.bump_change_seq()

    def skip_revision(self, deployment: Deployment, revision: int) -> None:
        """Never reuse `revision`: an interrupted deploy's snapshot rows name it, and no release
        will. The deployment row must have been read with `lock=True` in this transaction."""
        d = t.deployments
        self.conn.execute(
            update(d)
            .where(d.c.id == deployment.id, d.c.latest_revision < revision)
            .values(latest_revision=revision)
        )
