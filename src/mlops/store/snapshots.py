"""Data resources a deployment declares, and the rows of the snapshots taken of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from mlops.records import DataResource
from mlops.store import schema as t
from mlops.store.changes import ChangeRepo


def _to_resource(r: Any) -> DataResource:
    return DataResource(r.name, r.driver, r.location, r.policy, dict(r.retention or {}))


@dataclass(frozen=True, slots=True)
class NewSnapshot:
    """A snapshot taken before a release, as it is recorded."""

    deployment_id: int
    revision: int
    resource: str
    driver: str
    location: str
    checksum: str
    size_bytes: int
    status: str
    created_at: datetime
    expires_at: datetime | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SnapshotRow(NewSnapshot):
    """A recorded snapshot, with its id."""

    id: int


def _to_snapshot(r: Any) -> SnapshotRow:
    return SnapshotRow(**{**r._mapping, "details": dict(r.details or {})})


class SnapshotRepo(ChangeRepo):
    def data_resources(self, deployment_id: int) -> list[DataResource]:
        d = t.data_resources
        stmt = select(d).where(d.c.deployment_id == deployment_id).order_by(d.c.name)
        return [_to_resource(r) for r in self.conn.execute(stmt)]

    def all_data_resources(self) -> dict[int, dict[str, DataResource]]:
        """deployment id -> {name: resource}, for every deployment that declares data."""
        out: dict[int, dict[str, DataResource]] = {}
        for r in self.conn.execute(select(t.data_resources)):
            out.setdefault(r.deployment_id, {})[r.name] = _to_resource(r)
        return out

    def put_data_resource(self, deployment_id: int, resource: DataResource, at: datetime) -> None:
        """Declare a resource, or change how an existing one is kept."""
        self.conn.execute(
            self.upsert(
                t.data_resources,
                ["deployment_id", "name"],
                ["driver", "location", "policy", "retention"],
            ).values(
                deployment_id=deployment_id,
                name=resource.name,
                driver=resource.driver,
                location=resource.location,
                policy=resource.policy,
                retention=resource.retention,
                created_at=at,
            )
        )
        self.bump_change_seq()

    def delete_data_resource(self, deployment_id: int, name: str) -> bool:
        d = t.data_resources
        gone = self.conn.execute(
            delete(d).where(d.c.deployment_id == deployment_id, d.c.name == name)
        )
        self.bump_change_seq()
        return bool(gone.rowcount)

    def insert_snapshot(self, snapshot: NewSnapshot) -> int:
        stmt = insert(t.snapshots).values(**asdict(snapshot)).returning(t.snapshots.c.id)
        found = self.conn.execute(stmt)
        return int(found.scalar_one())

    def snapshot_rows(
        self,
        deployment_id: int | None,
        *,
        status: str | None = None,
        after_revision: int | None = None,
        upto_revision: int | None = None,
        limit: int = 1000,
    ) -> list[SnapshotRow]:
        """Snapshot rows (of a deployment, or all), newest first, by status and revision."""
        s = t.snapshots
        stmt = select(s)
        if deployment_id is not None:
            stmt = stmt.where(s.c.deployment_id == deployment_id)
        if status is not None:
            stmt = stmt.where(s.c.status == status)
        if after_revision is not None:
            stmt = stmt.where(s.c.revision > after_revision)
        if upto_revision is not None:
            stmt = stmt.where(s.c.revision <= upto_revision)
        stmt = stmt.order_by(s.c.id.desc()).limit(limit)
        return [_to_snapshot(row) for row in self.conn.execute(stmt)]

    def update_snapshot(
        self,
        snapshot_id: int,
        *,
        status: str,
        details: dict[str, Any],
        revision: int | None = None,
    ) -> None:
        s = t.snapshots
        values: dict[str, Any] = {"status": status, "details": details}
        if revision is not None:
            values["revision"] = revision
        self.conn.execute(update(s).where(s.c.id == snapshot_id).values(**values))

    def snapshot_row_locked(self, snapshot_id: int) -> SnapshotRow | None:
        """One snapshot row, locked until this transaction ends (SQLite: the write
        transaction already excludes every other writer)."""
        s = t.snapshots
        found = self.conn.execute(select(s).where(s.c.id == snapshot_id).with_for_update())
        row = found.first()
        return _to_snapshot(row) if row is not None else None

    def delete_snapshots(self, snapshot_ids: Sequence[int], *, status: str) -> None:
        """Forget the rows among `snapshot_ids` that still have `status` (a deploy that failed
        and put its data back forgets its pending snapshots)."""
        s = t.snapshots
        self.conn.execute(delete(s).where(s.c.id.in_(list(snapshot_ids)), s.c.status == status))
