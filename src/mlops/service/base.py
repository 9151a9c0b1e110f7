"""What every operation shares: the settings, the store, the artifacts, the clock, the
snapshot drivers, who acts; and the reads by key that operations make inside a transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mlops.core.limits import LIST_MAX
from mlops.core.refs import ComponentRef, only_deployment
from mlops.core.release import Release
from mlops.errors import InvalidInput, NotFound
from mlops.records import Actor, Deployment, ModelVersion, ReleaseRecord
from mlops.registry.artifacts import ArtifactStore
from mlops.service.drivers import BuiltinDrivers, SnapshotDrivers
from mlops.settings import Settings, check_actor, load_settings
from mlops.store import Store
from mlops.store.artifacts import StoreBlobs
from mlops.store.store import Tx

REASON_MAX = 2000
"""Longest reason, in characters."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class ServiceBase:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        clock: Callable[[], datetime] = utcnow,
        snapshot_drivers: SnapshotDrivers | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.store = store or Store(self.settings.store_url)
        # Hosts sharing a PostgreSQL store find every artifact in it; the folder is a cache.
        shared = StoreBlobs(self.store) if self.store.dialect == "postgresql" else None
        self.artifacts = ArtifactStore(self.settings.artifacts_dir, shared)
        self.clock = clock
        self.drivers: SnapshotDrivers = snapshot_drivers or BuiltinDrivers()

    def close(self) -> None:
        self.store.dispose()

    def _actor(self, actor: Actor | str | None) -> Actor:
        """Who acts: an `Actor` a face authenticated (an API token) as it is; a name the caller
        gives is recorded as claimed, like MLOPS_ACTOR; without one, the settings' actor (the
        OS account, or MLOPS_ACTOR)."""
        if isinstance(actor, Actor):
            return actor
        if actor is not None:
            return Actor(check_actor(actor), "claimed")
        return Actor(self.settings.actor, self.settings.actor_source)


def record_manual(
    tx: Tx,
    who: Actor,
    action: str,
    *,
    at: datetime,
    reason: str | None,
    details: dict[str, Any],
    deployment_id: int | None = None,
) -> int:
    """An event a person caused (trigger `manual`), with how the actor is known."""
    return tx.insert_event(
        deployment_id=deployment_id,
        action=action,
        trigger="manual",
        actor=who.name,
        actor_source=who.source,
        reason=reason,
        at=at,
        details=details,
    )


def check_reason(reason: str | None) -> None:
    """A reason is free text (shown escaped), bounded in length."""
    if reason is not None and len(reason) > REASON_MAX:
        raise InvalidInput(f"invalid --reason: {len(reason)} characters, at most {REASON_MAX}")


def check_limit(limit: int) -> None:
    if not 1 <= limit <= LIST_MAX:
        raise InvalidInput(f"--limit must be from 1 to {LIST_MAX}")


def version_of(tx: Tx, ref: ComponentRef) -> ModelVersion:
    found = tx.version(ref.model, ref.version)
    if found is not None:
        return found
    if tx.model_id(ref.model) is None:
        raise NotFound(f"model {ref.model!r} is not registered")
    raise NotFound(f"version {ref} is not registered")


def deployment_of(tx: Tx, name: str | None, *, lock: bool = False) -> Deployment:
    """The named deployment; with no name, the only one in the store."""
    if name is not None:
        found = tx.deployment(name, lock=lock)
        if found is None:
            raise NotFound(f"deployment {name!r} does not exist")
        return found
    some = tx.deployments(limit=2)
    only = only_deployment([d.name for d in some])
    return tx.deployment(only, lock=lock) or some[0]


def stable_of(tx: Tx, dep: Deployment) -> ReleaseRecord | None:
    return tx.release(dep, dep.stable_revision) if dep.stable_revision is not None else None


def core_of(record: ReleaseRecord | None) -> Release | None:
    if record is None:
        return None
    return Release(record.revision, record.components, record.previous_stable)
