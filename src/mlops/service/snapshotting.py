"""The snapshots of one deploy: taken before its migration, put back or dropped when it fails,
and the store rows that record them.

A deployment declares its data resources (an SQLite file, a PostgreSQL schema, a folder), each
with a policy for rollbacks: `restore` puts the snapshot back, `keep` leaves the data, `freeze`
refuses the rollback. Before a release's migration runs, every resource the release names is
snapshotted, and a migration that fails leaves the data as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mlops.core.retention import RetentionPolicy
from mlops.core.snapshot_status import EXPIRED, READY
from mlops.errors import SnapshotDeleteFailed, SnapshotMissing
from mlops.ratelog import RateLimitedLog
from mlops.records import DataResource
from mlops.service.drivers import SnapshotDrivers
from mlops.snapshots import Snapshot
from mlops.store.snapshots import NewSnapshot, SnapshotRow

POLICIES = ("restore", "keep", "freeze")
Taken = Sequence[tuple[DataResource, Snapshot]]

_warn = RateLimitedLog(logging.getLogger("mlops.snapshots"), interval_s=60.0)


def retention_policy(data: Mapping[str, Any] | None) -> RetentionPolicy:
    data = data or {}
    age = data.get("max_age_s")
    return RetentionPolicy(
        keep_last=data.get("keep_last"),
        max_age=timedelta(seconds=float(age)) if age is not None else None,
    )


def snapshot_all(
    drivers: SnapshotDrivers, resources: Sequence[DataResource], into: Path
) -> list[tuple[DataResource, Snapshot]]:
    """Snapshot every resource; if one fails, the ones taken are deleted and the error raised."""
    taken: list[tuple[DataResource, Snapshot]] = []
    try:
        for resource in resources:
            snap = drivers.driver(resource.driver).snapshot(
                resource.location, into, resource=resource.name
            )
            taken.append((resource, snap.with_policy(retention_policy(resource.retention))))
    except Exception:
        discard(drivers, taken)
        raise
    return taken


def put_back(
    drivers: SnapshotDrivers, taken: Taken, before_discard: Callable[[], None] | None = None
) -> None:
    """After a failed migration or release: put the data back (a restore of unchanged data
    writes nothing), call `before_discard` (it forgets the pending rows), then drop the
    snapshots. If a restore raises, nothing is forgotten and nothing dropped."""
    for resource, snap in taken:
        drivers.driver(resource.driver).restore(snap, resource.location)
    if before_discard is not None:
        before_discard()
    discard(drivers, taken)


def discard(drivers: SnapshotDrivers, taken: Taken) -> None:
    """Drop snapshots no row records (any more): files that cannot be deleted are logged."""
    for _, snap in taken:
        delete_files(drivers, snap)


def delete_files(drivers: SnapshotDrivers, snap: Snapshot) -> bool:
    """Delete a snapshot's files; False (logged at WARNING, rate limited) when they stay."""
    try:
        drivers.driver(snap.driver).delete(snap)
    except SnapshotDeleteFailed as exc:
        _warn.log(
            logging.WARNING,
            f"delete:{snap.driver}",
            "the snapshot of %r at %s was not deleted: %s",
            snap.resource,
            snap.location,
            exc,
        )
        return False
    return True


def snapshot_row(
    dep_id: int,
    revision: int,
    resource: DataResource,
    snap: Snapshot,
    *,
    status: str = READY,
    deployer: Mapping[str, Any] | None = None,
) -> NewSnapshot:
    return NewSnapshot(
        deployment_id=dep_id,
        revision=revision,
        resource=resource.name,
        driver=snap.driver,
        location=snap.location,
        checksum=snap.checksum,
        size_bytes=snap.size_bytes,
        status=status,
        created_at=snap.created_at,
        expires_at=snap.expires_at,
        details={"taken": snap.details, **({"deployer": dict(deployer)} if deployer else {})},
    )


def check_present(row: SnapshotRow) -> None:
    """Refuse, before anything changes, a restore whose snapshot is gone."""
    name = row.resource
    if row.status == EXPIRED:
        raise SnapshotMissing(
            f"the snapshot of {name!r} taken before release {row.revision} was deleted by "
            "its retention policy; roll back with the data as it is by setting the policy "
            f"to keep (`mlops data add … {name} … --policy keep`)"
        )
    if not (Path(row.location) / "snapshot.json").is_file():
        raise SnapshotMissing(
            f"the snapshot of {name!r} taken before release {row.revision} is missing from "
            f"{row.location}; nothing was changed"
        )


def as_snapshot(row: SnapshotRow) -> Snapshot:
    """The driver's view of a stored snapshot: the checksum a restore trusts is the store's."""
    created: datetime = row.created_at
    return Snapshot(
        resource=row.resource,
        driver=row.driver,
        location=row.location,
        checksum=row.checksum,
        size_bytes=row.size_bytes,
        created_at=created,
        expires_at=row.expires_at,
    )
