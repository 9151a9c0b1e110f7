"""Models and their versions: allocating version numbers, reading versions by key, quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, case, func, insert, select, update

from mlops.records import ModelSummary, ModelVersion
from mlops.store import schema as t
from mlops.store.transaction import Transaction


def _version_columns() -> list[Any]:
    return [t.model_versions, t.models.c.name.label("model_name")]


def _to_version(row: Row[Any]) -> ModelVersion:
    m = row._mapping
    return ModelVersion(
        id=m["id"],
        model=m["model_name"],
        version=m["version"],
        flavor=m["flavor"],
        artifact_sha256=m["artifact_sha256"],
        artifact_kind=m["artifact_kind"],
        size_bytes=m["size_bytes"],
        signature=m["signature"],
        tags=m["tags"],
        source=m["source"],
        trusted=bool(m["trusted"]),
        status=m["status"],
        quarantine_reason=m["quarantine_reason"],
        created_at=m["created_at"],
        created_by=m["created_by"],
    )


def version_stmt(model: str, version: int) -> Any:
    """One version by model name and number (on the rollback path)."""
    return (
        select(*_version_columns())
        .join(t.models, t.models.c.id == t.model_versions.c.model_id)
        .where(t.models.c.name == model, t.model_versions.c.version == version)
    )


class ModelRepo(Transaction):
    def model_id(
        self, name: str, *, create_at: datetime | None = None, lock: bool = False
    ) -> int | None:
        if create_at is not None:
            self.conn.execute(
                self._insert(t.models)
                .values(name=name, latest_version=0, created_at=create_at)
                .on_conflict_do_nothing(index_elements=["name"])
            )
        stmt = select(t.models.c.id).where(t.models.c.name == name)
        return self.conn.execute(self._lock(stmt) if lock else stmt).scalar_one_or_none()

    def allocate_version(self, model_id: int) -> int:
        return int(
            self.conn.execute(
                update(t.models)
                .where(t.models.c.id == model_id)
                .values(latest_version=t.models.c.latest_version + 1)
                .returning(t.models.c.latest_version)
            ).scalar_one()
        )

    def insert_version(
        self,
        model_id: int,
        version: int,
        *,
        flavor: str,
        artifact_sha256: str,
        artifact_kind: str,
        size_bytes: int,
        signature: dict[str, Any],
        tags: dict[str, str],
        source: str | None,
        trusted: bool,
        status: str,
        created_at: datetime,
        created_by: str,
    ) -> int:
        return int(
            self.conn.execute(
                insert(t.model_versions)
                .values(
                    model_id=model_id,
                    version=version,
                    flavor=flavor,
                    artifact_sha256=artifact_sha256,
                    artifact_kind=artifact_kind,
                    size_bytes=size_bytes,
                    signature=signature,
                    tags=tags,
                    source=source,
                    trusted=trusted,
                    status=status,
                    created_at=created_at,
                    created_by=created_by,
                )
                .returning(t.model_versions.c.id)
            ).scalar_one()
        )

    def version(self, model: str, version: int) -> ModelVersion | None:
        row = self.conn.execute(version_stmt(model, version)).first()
        return _to_version(row) if row else None

    def versions(self, model: str, *, limit: int, before: int | None = None) -> list[ModelVersion]:
        stmt = (
            select(*_version_columns())
            .join(t.models, t.models.c.id == t.model_versions.c.model_id)
            .where(t.models.c.name == model)
            .order_by(t.model_versions.c.version.desc())
            .limit(limit)
        )
        if before is not None:
            stmt = stmt.where(t.model_versions.c.version < before)
        return [_to_version(row) for row in self.conn.execute(stmt)]

    def versions_by_id(self, ids: Sequence[int]) -> dict[int, ModelVersion]:
        if not ids:
            return {}
        stmt = (
            select(*_version_columns())
            .join(t.models, t.models.c.id == t.model_versions.c.model_id)
            .where(t.model_versions.c.id.in_(list(ids)))
        )
        return {row._mapping["id"]: _to_version(row) for row in self.conn.execute(stmt)}

    def model_summaries(self) -> list[ModelSummary]:
        mv = t.model_versions
        quarantined = func.sum(case((mv.c.status == "quarantined", 1), else_=0))
        stmt = (
            select(
                t.models.c.name,
                t.models.c.latest_version,
                t.models.c.created_at,
                func.count(mv.c.id),
                func.coalesce(quarantined, 0),
            )
            .outerjoin(mv, mv.c.model_id == t.models.c.id)
            .group_by(t.models.c.id)
            .order_by(t.models.c.name)
        )
        return [
            ModelSummary(name, latest, int(count), int(bad), created)
            for name, latest, created, count, bad in self.conn.execute(stmt)
        ]

    def set_version_status(
        self,
        version_id: int,
        status: str,
        *,
        reason: str | None,
        actor: str | None,
        at: datetime | None,
    ) -> None:
        self.conn.execute(
            update(t.model_versions)
            .where(t.model_versions.c.id == version_id)
            .values(
                status=status, quarantine_reason=reason, quarantined_by=actor, quarantined_at=at
            )
        )

    def deployments_serving(self, version_id: int) -> list[str]:
        d, rc = t.deployments, t.release_components
        stmt = (
            select(d.c.name)
            .join(rc, and_(rc.c.deployment_id == d.c.id, rc.c.revision == d.c.stable_revision))
            .where(rc.c.model_version_id == version_id)
            .distinct()
            .order_by(d.c.name)
        )
        return list(self.conn.execute(stmt).scalars())
