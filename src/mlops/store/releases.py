"""Releases: the append-only revisions of a deployment, their component versions and pins,
and the moves between stable and candidate.

Every read on the rollback path is by a primary key or a unique index, so its cost does not
grow with the number of versions or releases (see docs/rollback.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from mlops.core.refs import ComponentRef
from mlops.errors import ConcurrentUpdate
from mlops.records import Deployment, Event, ReleaseRecord
from mlops.store import schema as t
from mlops.store.changes import ChangeRepo
from mlops.store.events import to_event


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


def pin_stmt(deployment_id: int, component: str, model_version_id: int) -> Any:
    p = t.release_pins
    return select(p.c.revision).where(
        p.c.deployment_id == deployment_id,
        p.c.component == component,
        p.c.model_version_id == model_version_id,
    )


class ReleaseRepo(ChangeRepo):
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
        events = self._events_by_id(
            deployment, [m["event_id"] for m in rows.values() if m["event_id"] is not None]
        )
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

    def stable_components(
        self, deployment_id: int | None = None
    ) -> dict[int, dict[str, tuple[ComponentRef, str]]]:
        """Each deployment's stable components with their versions' status (of one deployment,
        or of all in one query): deployment id -> {component: (ref, status)}."""
        d, rc, mv = t.deployments, t.release_components, t.model_versions
        stmt = (
            select(rc.c.deployment_id, rc.c.component, mv.c.version, t.models.c.name, mv.c.status)
            .join(d, (d.c.id == rc.c.deployment_id) & (d.c.stable_revision == rc.c.revision))
            .join(mv, mv.c.id == rc.c.model_version_id)
            .join(t.models, t.models.c.id == mv.c.model_id)
        )
        if deployment_id is not None:
            stmt = stmt.where(d.c.id == deployment_id)
        out: dict[int, dict[str, tuple[ComponentRef, str]]] = {}
        for dep_id, component, version, model, status in self.conn.execute(stmt):
            out.setdefault(dep_id, {})[component] = (ComponentRef(model, version), status)
        return out

    def _events_by_id(self, deployment: Deployment, event_ids: list[int]) -> dict[int, Event]:
        if not event_ids:
            return {}
        stmt = select(t.events).where(t.events.c.id.in_(event_ids))
        return {
            row._mapping["id"]: to_event(row, deployment.name) for row in self.conn.execute(stmt)
        }

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
        revision = self._next_revision(deployment, candidate=status == "candidate", at=at)
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

    def _next_revision(self, deployment: Deployment, *, candidate: bool, at: datetime) -> int:
        """Take revision latest+1, unless another writer moved the deployment on meanwhile."""
        revision = deployment.latest_revision + 1
        values: dict[str, Any] = {"latest_revision": revision, "updated_at": at}
        if candidate:
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
