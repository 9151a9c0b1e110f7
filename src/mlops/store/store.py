"""The Store: transactions over the schema, with keyed reads and append-only writes.

Every read on the rollback path is by a primary key or a unique index, so its cost does
not grow with the number of versions or releases (see docs/rollback.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from mlops.core.refs import ComponentRef
from mlops.errors import ConcurrentUpdate
from mlops.records import (
    DataResource,
    Deployment,
    Event,
    ModelSummary,
    ModelVersion,
    ReleaseRecord,
)
from mlops.store import schema as t
from mlops.store.engine import WRITE_OPTION, make_engine, translate_errors
from mlops.store.migrate import ensure_schema

CHANGE_CHANNEL = "mlops_changes"
SERVED_ROLES = ("live", "pinned")
"""Roles whose answers went to a client, and so may be labelled."""
ACTOR_SOURCE_KEY = "actor_source"
"""Kept in an event's `details` column (no schema change), read back as `Event.actor_source`."""


class Store:
    """A handle on the database: `read()` and `write()` give a `Tx` inside one transaction."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        if migrate:
            with translate_errors(url):
                ensure_schema(self.engine)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with translate_errors(self.url), self.engine.connect() as conn, conn.begin():
            yield Tx(conn, self.dialect)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with translate_errors(self.url), self.engine.connect() as raw:
            conn = raw.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield Tx(conn, self.dialect, write=True)

    def explain(self, statement: Any) -> list[str]:
        """The database's query plan for a statement, one line per row."""
        compiled = statement.compile(self.engine, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if self.dialect == "sqlite" else "EXPLAIN "
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + str(compiled)).fetchall()
        return [" | ".join(str(v) for v in row) for row in rows]

    def dispose(self) -> None:
        self.engine.dispose()


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


def _to_deployment(row: Row[Any]) -> Deployment:
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


def _to_event(row: Row[Any], deployment: str | None) -> Event:
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


# Statements on the rollback path, kept as functions so the benchmark can EXPLAIN them.


def deployment_stmt(name: str) -> Any:
    return select(t.deployments).where(t.deployments.c.name == name)


def release_stmt(deployment_id: int, revision: int) -> Any:
    return select(t.releases).where(
        t.releases.c.deployment_id == deployment_id, t.releases.c.revision == revision
    )


def release_components_stmt(deployment_id: int, revisions: Sequence[int]) -> Any:
    rc, mv = t.release_components, t.model_versions
    return (
        select(rc.c.revision, rc.c.component, mv.c.id, mv.c.version, t.models.c.name)
        .join(mv, mv.c.id == rc.c.model_version_id)
        .join(t.models, t.models.c.id == mv.c.model_id)
        .where(rc.c.deployment_id == deployment_id, rc.c.revision.in_(list(revisions)))
    )


def version_stmt(model: str, version: int) -> Any:
    return (
        select(*_version_columns())
        .join(t.models, t.models.c.id == t.model_versions.c.model_id)
        .where(t.models.c.name == model, t.model_versions.c.version == version)
    )


def pin_stmt(deployment_id: int, component: str, model_version_id: int) -> Any:
    p = t.release_pins
    return select(p.c.revision).where(
        p.c.deployment_id == deployment_id,
        p.c.component == component,
        p.c.model_version_id == model_version_id,
    )


class Tx:
    """One transaction. Methods read or write by key; none scans history."""

    def __init__(self, conn: Connection, dialect: str, *, write: bool = False) -> None:
        self.conn = conn
        self.dialect = dialect
        self.write = write

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update() if self.write and self.dialect == "postgresql" else stmt

    # models and versions

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

    def insert_version(self, model_id: int, version: int, **values: Any) -> int:
        return int(
            self.conn.execute(
                insert(t.model_versions)
                .values(model_id=model_id, version=version, **values)
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

    # deployments and releases

    def deployment(self, name: str, *, lock: bool = False) -> Deployment | None:
        stmt = deployment_stmt(name)
        row = self.conn.execute(self._lock(stmt) if lock else stmt).first()
        return _to_deployment(row) if row else None

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
        """Deployments by name; `limit=None` for all of them."""
        stmt = select(t.deployments).order_by(t.deployments.c.name).limit(limit)
        return [_to_deployment(row) for row in self.conn.execute(stmt)]

    def release(self, deployment: Deployment, revision: int) -> ReleaseRecord | None:
        found = self.releases(deployment, [revision])
        return found[0] if found else None

    def releases(self, deployment: Deployment, revisions: Sequence[int]) -> list[ReleaseRecord]:
        """The given releases with their components and events, in the order asked."""
        if not revisions:
            return []
        r = t.releases
        if len(revisions) == 1:
            stmt = release_stmt(deployment.id, revisions[0])
        else:
            stmt = select(r).where(
                r.c.deployment_id == deployment.id, r.c.revision.in_(list(revisions))
            )
        rows = {row._mapping["revision"]: row._mapping for row in self.conn.execute(stmt)}
        if not rows:
            return []
        components: dict[int, dict[str, ComponentRef]] = {rev: {} for rev in rows}
        for rev, component, _id, version, model in self.conn.execute(
            release_components_stmt(deployment.id, list(rows))
        ):
            components[rev][component] = ComponentRef(model, version)
        event_ids = [m["event_id"] for m in rows.values() if m["event_id"] is not None]
        events = {}
        if event_ids:
            events = {
                row._mapping["id"]: _to_event(row, deployment.name)
                for row in self.conn.execute(select(t.events).where(t.events.c.id.in_(event_ids)))
            }
        return [
            ReleaseRecord(
                deployment=deployment.name,
                revision=rev,
                status=m["status"],
                strategy=m["strategy"],
                components=components[rev],
                previous_stable=m["previous_stable"],
                source_revision=m["source_revision"],
                changes=m["changes"],
                created_at=m["created_at"],
                created_by=m["created_by"],
                event=events.get(m["event_id"]),
            )
            for rev in revisions
            if (m := rows.get(rev)) is not None
        ]

    def history(
        self, deployment: Deployment, *, limit: int, before: int | None = None
    ) -> list[ReleaseRecord]:
        top = (before if before is not None else deployment.latest_revision + 1) - 1
        revisions = list(range(top, max(top - limit, 0), -1))
        return self.releases(deployment, revisions)

    def pinned_revision(self, deployment_id: int, component: str, version_id: int) -> int | None:
        return self.conn.execute(
            pin_stmt(deployment_id, component, version_id)
        ).scalar_one_or_none()

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

    def append_release(
        self,
        deployment: Deployment,
        *,
        components: dict[str, int],
        status: str,
        strategy: str,
        source_revision: int | None,
        changes: list[dict[str, Any]],
        event_id: int,
        actor: str,
        at: datetime,
        replaced_status: str = "superseded",
    ) -> int:
        """Write revision latest+1, as the stable release or as a rollout's candidate.

        The deployment row must have been read with `lock=True` in this transaction.
        """
        revision = deployment.latest_revision + 1
        values: dict[str, Any] = {"latest_revision": revision, "updated_at": at}
        if status == "candidate":
            values["candidate_revision"] = revision
        bumped = self.conn.execute(
            update(t.deployments)
            .where(
                t.deployments.c.id == deployment.id,
                t.deployments.c.latest_revision == deployment.latest_revision,
            )
            .values(**values)
        )
        if bumped.rowcount != 1:
            raise ConcurrentUpdate(
                f"deployment {deployment.name!r} changed while this operation ran; try again"
            )
        self.conn.execute(
            insert(t.releases).values(
                deployment_id=deployment.id,
                revision=revision,
                previous_stable=deployment.stable_revision,
                source_revision=source_revision,
                status=status,
                strategy=strategy,
                config={},
                changes=changes,
                event_id=event_id,
                created_at=at,
                created_by=actor,
            )
        )
        self.conn.execute(
            insert(t.release_components),
            [
                {
                    "deployment_id": deployment.id,
                    "revision": revision,
                    "component": name,
                    "model_version_id": version_id,
                }
                for name, version_id in components.items()
            ],
        )
        if status == "stable":
            self.make_stable(deployment, revision, at=at, replaced_status=replaced_status)
        else:
            self.bump_change_seq()
        return revision

    def make_stable(
        self,
        deployment: Deployment,
        revision: int,
        *,
        at: datetime,
        replaced_status: str = "superseded",
        warm_until: float | None = None,
    ) -> None:
        """Make `revision` the stable release: all traffic to it, its versions pinned. With
        `warm_until` (epoch seconds), gateways keep the replaced release loaded until then."""
        routes = None
        if warm_until is not None and deployment.stable_revision not in (None, revision):
            routes = {
                "weights": {str(revision): 100.0},
                "shadows": {},
                "warm": {str(deployment.stable_revision): warm_until},
            }
        self.conn.execute(
            update(t.deployments)
            .where(t.deployments.c.id == deployment.id)
            .values(stable_revision=revision, candidate_revision=None, routes=routes, updated_at=at)
        )
        r = t.releases
        if deployment.stable_revision is not None and deployment.stable_revision != revision:
            self.conn.execute(
                update(r)
                .where(
                    r.c.deployment_id == deployment.id, r.c.revision == deployment.stable_revision
                )
                .values(status=replaced_status)
            )
        self.conn.execute(
            update(r)
            .where(r.c.deployment_id == deployment.id, r.c.revision == revision)
            .values(status="stable")
        )
        self._pin(deployment.id, revision, self.pipeline_rows(deployment, [revision])[revision])
        self.bump_change_seq()

    def end_candidate(self, deployment: Deployment, *, status: str, at: datetime) -> None:
        """Take a rollout's candidate off traffic and close it as `rolled_back` or `aborted`."""
        if deployment.candidate_revision is None:
            return
        r = t.releases
        self.conn.execute(
            update(r)
            .where(
                r.c.deployment_id == deployment.id, r.c.revision == deployment.candidate_revision
            )
            .values(status=status)
        )
        self.conn.execute(
            update(t.deployments)
            .where(t.deployments.c.id == deployment.id)
            .values(candidate_revision=None, routes=None, updated_at=at)
        )
        self.bump_change_seq()

    # rollouts and the commands people send them

    def insert_rollout(self, deployment: Deployment, **values: Any) -> int:
        return int(
            self.conn.execute(
                insert(t.rollouts)
                .values(deployment_id=deployment.id, **values)
                .returning(t.rollouts.c.id)
            ).scalar_one()
        )

    def active_rollout(self, deployment: Deployment) -> dict[str, Any] | None:
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
        return dict(row._mapping) if row else None

    def update_rollout(self, rollout_id: int, **values: Any) -> None:
        self.conn.execute(update(t.rollouts).where(t.rollouts.c.id == rollout_id).values(**values))

    def insert_command(self, deployment: Deployment, **values: Any) -> int:
        return int(
            self.conn.execute(
                insert(t.commands)
                .values(deployment_id=deployment.id, **values)
                .returning(t.commands.c.id)
            ).scalar_one()
        )

    def pending_commands(self, deployment_id: int) -> list[dict[str, Any]]:
        c = t.commands
        stmt = (
            select(c)
            .where(c.c.deployment_id == deployment_id, c.c.applied_at.is_(None))
            .order_by(c.c.id)
        )
        return [dict(row._mapping) for row in self.conn.execute(stmt)]

    def mark_command(self, command_id: int, *, at: datetime, result: dict[str, Any]) -> None:
        c = t.commands
        self.conn.execute(
            update(c).where(c.c.id == command_id).values(applied_at=at, result=result)
        )

    def set_routes(
        self, deployment: Deployment, routes: dict[str, Any] | None, at: datetime
    ) -> None:
        self.conn.execute(
            update(t.deployments)
            .where(t.deployments.c.id == deployment.id)
            .values(routes=routes, updated_at=at)
        )
        self.bump_change_seq()

    def pipeline_rows(
        self, deployment: Deployment, revisions: Sequence[int]
    ) -> dict[int, dict[str, int]]:
        """revision -> {component: model_version_id} for the given revisions."""
        out: dict[int, dict[str, int]] = {rev: {} for rev in revisions}
        for rev, component, version_id, _version, _model in self.conn.execute(
            release_components_stmt(deployment.id, list(revisions))
        ):
            out[rev][component] = version_id
        return out

    def versions_by_id(self, ids: Sequence[int]) -> dict[int, ModelVersion]:
        if not ids:
            return {}
        stmt = (
            select(*_version_columns())
            .join(t.models, t.models.c.id == t.model_versions.c.model_id)
            .where(t.model_versions.c.id.in_(list(ids)))
        )
        return {row._mapping["id"]: _to_version(row) for row in self.conn.execute(stmt)}

    def measurement_rows(self, deployment_id: int, since: datetime) -> list[dict[str, Any]]:
        m = t.measurements
        stmt = select(m).where(m.c.deployment_id == deployment_id, m.c.ended_at > since)
        return [dict(row._mapping) for row in self.conn.execute(stmt)]

    def measurement_rows_after(self, deployment_id: int, after_id: int) -> list[dict[str, Any]]:
        m = t.measurements
        stmt = (
            select(m).where(m.c.deployment_id == deployment_id, m.c.id > after_id).order_by(m.c.id)
        )
        return [dict(row._mapping) for row in self.conn.execute(stmt)]

    def labelled_predictions(
        self, deployment_id: int, since: datetime, until: datetime | None = None
    ) -> list[tuple[int, str, Any, Any]]:
        """(revision, role, prediction, label) of requests labelled in (since, until]."""
        p, f = t.predictions, t.feedback
        stmt = (
            select(p.c.revision, p.c.role, p.c.prediction, f.c.label)
            .join(
                f,
                (f.c.deployment_id == p.c.deployment_id) & (f.c.request_id == p.c.request_id),
            )
            .where(f.c.deployment_id == deployment_id, f.c.at > since)
        )
        if until is not None:
            stmt = stmt.where(f.c.at <= until)
        return [tuple(row) for row in self.conn.execute(stmt)]

    def add_label(self, deployment_id: int, request_id: str, label: Any, at: datetime) -> str:
        """Keep a delayed label for a request the deployment answered: `accepted`, `duplicate`
        (a label came first; it stays) or `unserved` (no answer of it is logged)."""
        p, f = t.predictions, t.feedback
        served = select(p.c.request_id).where(
            p.c.deployment_id == deployment_id,
            p.c.request_id == request_id,
            p.c.role.in_(SERVED_ROLES),
        )
        if self.conn.execute(served.limit(1)).first() is None:
            return "unserved"
        added = self.conn.execute(
            self.insert_new(f, ["deployment_id", "request_id"])
            .values(deployment_id=deployment_id, request_id=request_id, label=label, at=at)
            .returning(f.c.request_id)
        ).first()
        return "duplicate" if added is None else "accepted"

    def mirrored_answers(
        self, deployment_id: int, since: datetime, until: datetime | None = None
    ) -> list[tuple[int, Any, Any]]:
        """(shadow revision, its prediction, the live prediction) of the mirrored requests
        answered in (since, until]."""
        shadow, live = t.predictions.alias("shadow"), t.predictions.alias("live")
        stmt = (
            select(shadow.c.revision, shadow.c.prediction, live.c.prediction)
            .join(
                live,
                (live.c.deployment_id == shadow.c.deployment_id)
                & (live.c.request_id == shadow.c.request_id)
                & (live.c.role == "live"),
            )
            .where(
                shadow.c.role == "shadow",
                shadow.c.deployment_id == deployment_id,
                shadow.c.at > since,
            )
        )
        if until is not None:
            stmt = stmt.where(shadow.c.at <= until)
        return [tuple(row) for row in self.conn.execute(stmt)]

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

    def take_lease(self, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
        """Take or renew lease `name` for `holder` until now + ttl; False while another holds it."""
        lease = t.leases
        self.conn.execute(
            self.insert_new(lease, ["name"]).values(
                name=name, holder=holder, expires_at=now - timedelta(seconds=1)
            )
        )
        taken = self.conn.execute(
            update(lease)
            .where(lease.c.name == name, or_(lease.c.holder == holder, lease.c.expires_at < now))
            .values(holder=holder, expires_at=now + timedelta(seconds=ttl_s))
        )
        return bool(taken.rowcount == 1)

    # data resources and their snapshots

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

    def insert_snapshot(self, row: dict[str, Any]) -> int:
        found = self.conn.execute(insert(t.snapshots).values(**row).returning(t.snapshots.c.id))
        return int(found.scalar_one())

    def snapshot_rows(
        self,
        deployment_id: int | None,
        *,
        status: str | None = None,
        after_revision: int | None = None,
        upto_revision: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
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
        return [dict(row._mapping) for row in self.conn.execute(stmt)]

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

    def snapshot_row_locked(self, snapshot_id: int) -> dict[str, Any] | None:
        """One snapshot row, locked until this transaction ends (SQLite: the write
        transaction already excludes every other writer)."""
        s = t.snapshots
        found = self.conn.execute(select(s).where(s.c.id == snapshot_id).with_for_update())
        row = found.first()
        return dict(row._mapping) if row is not None else None

    def delete_snapshots(self, snapshot_ids: Sequence[int], *, status: str) -> None:
        """Forget the rows among `snapshot_ids` that still have `status` (a deploy that failed
        and put its data back forgets its pending snapshots)."""
        s = t.snapshots
        self.conn.execute(delete(s).where(s.c.id.in_(list(snapshot_ids)), s.c.status == status))

    def skip_revision(self, deployment: Deployment, revision: int) -> None:
        """Never reuse `revision`: an interrupted deploy's snapshot rows name it, and no release
        will. The deployment row must have been read with `lock=True` in this transaction."""
        d = t.deployments
        self.conn.execute(
            update(d)
            .where(d.c.id == deployment.id, d.c.latest_revision < revision)
            .values(latest_revision=revision)
        )

    def update_event_details(self, event_id: int, more: dict[str, Any]) -> None:
        e = t.events
        found = self.conn.execute(select(e.c.details).where(e.c.id == event_id)).scalar_one()
        self.conn.execute(
            update(e).where(e.c.id == event_id).values(details={**(found or {}), **more})
        )

    def release_lease(self, name: str, holder: str, now: datetime) -> None:
        """Give lease `name` up, if `holder` has it, so another may take it at once."""
        lease = t.leases
        self.conn.execute(
            update(lease)
            .where(lease.c.name == name, lease.c.holder == holder)
            .values(expires_at=now - timedelta(seconds=1))
        )

    def insert_new(self, table: Any, keys: list[str]) -> Any:
        """INSERT … ON CONFLICT (keys) DO NOTHING, on either database."""
        return self._insert(table).on_conflict_do_nothing(index_elements=keys)

    def upsert(self, table: Any, keys: list[str], update_columns: list[str]) -> Any:
        """INSERT … ON CONFLICT (keys) DO UPDATE of `update_columns`, on either database."""
        stmt = self._insert(table)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update_columns}
        )

    def _pin(self, deployment_id: int, revision: int, components: dict[str, int]) -> None:
        self.conn.execute(
            self.upsert(
                t.release_pins, ["deployment_id", "component", "model_version_id"], ["revision"]
            ),
            [
                {
                    "deployment_id": deployment_id,
                    "component": name,
                    "model_version_id": version_id,
                    "revision": revision,
                }
                for name, version_id in components.items()
            ],
        )

    def bump_change_seq(self) -> int:
        seq = int(
            self.conn.execute(
                update(t.store_meta)
                .where(t.store_meta.c.key == "change_seq")
                .values(value=t.store_meta.c.value + 1)
                .returning(t.store_meta.c.value)
            ).scalar_one()
        )
        if self.dialect == "postgresql":
            self.conn.execute(
                text("SELECT pg_notify(:channel, :seq)"),
                {"channel": CHANGE_CHANNEL, "seq": str(seq)},
            )
        return seq

    def change_seq(self) -> int:
        return int(
            self.conn.execute(
                select(t.store_meta.c.value).where(t.store_meta.c.key == "change_seq")
            ).scalar_one()
        )

    def events(self, deployment: Deployment | None, *, limit: int) -> list[Event]:
        stmt = select(t.events).order_by(t.events.c.id.desc()).limit(limit)
        if deployment is not None:
            stmt = stmt.where(t.events.c.deployment_id == deployment.id)
        name = deployment.name if deployment else None
        return [_to_event(row, name) for row in self.conn.execute(stmt)]


def _to_resource(r: Any) -> DataResource:
    return DataResource(r.name, r.driver, r.location, r.policy, dict(r.retention or {}))
