"""The data a deployment reads: snapshots before a release's migration, restores on rollback.

A deployment declares its data resources (an SQLite file, a PostgreSQL schema, a folder), each
with a policy for rollbacks: `restore` puts the snapshot back, `keep` leaves the data, `freeze`
refuses the rollback. A release may carry a migration (an SQL file, or a Python callable
`module:function` that gets `{resource name: location}`); before it runs, every resource the
release names is snapshotted, and a migration that fails leaves the data as it was.
"""

from __future__ import annotations

import importlib
import os
import socket
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mlops.core.retention import RetentionPolicy
from mlops.errors import InvalidInput, MigrationFailed, MlopsError, SnapshotMissing, UnreadableFile
from mlops.records import DataResource
from mlops.snapshots import Snapshot, driver_for
from mlops.snapshots.postgresql import split_location

POLICIES = ("restore", "keep", "freeze")
READY, RESTORING, RESTORED, RESTORE_FAILED = "ready", "restoring", "restored", "restore_failed"
EXPIRED = "expired"
"""Deleted by its resource's retention policy; the row stays so a rollback can say so."""
PENDING = "pending"
"""Taken by a deploy whose migration may be running: its release is not written yet."""
ABANDONED = "abandoned"
"""Its deploy died between migration and release: the snapshot was put back, then deleted."""


@dataclass(frozen=True)
class Migration:
    """An SQL file run on each SQL resource in one transaction, or a Python callable."""

    source: str

    @property
    def is_sql(self) -> bool:
        return self.source.endswith(".sql")

    @classmethod
    def parse(cls, source: str) -> Migration:
        migration = cls(source)
        if migration.is_sql:
            path = Path(source)
            if not path.is_file():
                raise UnreadableFile(f"cannot read the migration {source}: no such file")
        else:
            migration.function()
        return migration

    def function(self) -> Callable[[dict[str, str]], Any]:
        module_name, _, name = self.source.partition(":")
        if not module_name or not name:
            raise InvalidInput(
                f"a migration is an .sql file or a Python callable `module:function`, "
                f"not {self.source!r}"
            )
        try:
            found = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise InvalidInput(f"cannot import the migration {self.source}: {exc}") from None
        if not callable(found):
            raise InvalidInput(f"the migration {self.source} is not callable")
        return found  # type: ignore[no-any-return]

    def run(self, resources: Sequence[DataResource]) -> None:
        try:
            if self.is_sql:
                sql = Path(self.source).read_text()
                for resource in resources:
                    _run_sql(resource, sql)
            else:
                self.function()({r.name: r.location for r in resources})
        except MlopsError:
            raise
        except Exception as exc:
            raise MigrationFailed(
                f"the migration {self.source} failed: {type(exc).__name__}: {exc}"
            ) from None


def _run_sql(resource: DataResource, sql: str) -> None:
    if resource.driver == "sqlite":
        conn = sqlite3.connect(resource.location, isolation_level=None, timeout=30)
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;COMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
    elif resource.driver == "postgresql":
        import psycopg
        from psycopg import sql as pgsql

        url, schema = split_location(resource.location)
        with psycopg.connect(url) as pg:  # one transaction: committed, or rolled back
            pg.execute(pgsql.SQL("SET LOCAL search_path TO {}").format(pgsql.Identifier(schema)))
            pg.execute(sql.encode())
    else:
        raise InvalidInput(
            f"an SQL migration cannot change the {resource.driver} resource {resource.name!r}: "
            "use a Python callable"
        )


def retention_policy(data: Mapping[str, Any] | None) -> RetentionPolicy:
    data = data or {}
    age = data.get("max_age_s")
    return RetentionPolicy(
        keep_last=data.get("keep_last"),
        max_age=timedelta(seconds=float(age)) if age is not None else None,
    )


def snapshot_all(
    resources: Sequence[DataResource], into: Path
) -> list[tuple[DataResource, Snapshot]]:
    """Snapshot every resource; if one fails, the ones taken are deleted and the error raised."""
    taken: list[tuple[DataResource, Snapshot]] = []
    try:
        for resource in resources:
            snap = driver_for(resource.driver).snapshot(
                resource.location, into, resource=resource.name
            )
            taken.append((resource, snap.with_policy(retention_policy(resource.retention))))
    except Exception:
        discard(taken)
        raise
    return taken


def put_back(
    taken: Sequence[tuple[DataResource, Snapshot]],
    before_discard: Callable[[], None] | None = None,
) -> None:
    """After a failed migration or release: put the data back (a restore of unchanged data
    writes nothing), call `before_discard` (it forgets the pending rows), then drop the
    snapshots. If a restore raises, nothing is forgotten and nothing dropped."""
    for resource, snap in taken:
        driver_for(resource.driver).restore(snap, resource.location)
    if before_discard is not None:
        before_discard()
    discard(taken)


def discard(taken: Sequence[tuple[DataResource, Snapshot]]) -> None:
    for resource, snap in taken:
        driver_for(resource.driver).delete(snap)


def snapshot_row(
    dep_id: int,
    revision: int,
    resource: DataResource,
    snap: Snapshot,
    *,
    status: str = READY,
    deployer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "deployment_id": dep_id,
        "revision": revision,
        "resource": resource.name,
        "driver": snap.driver,
        "location": snap.location,
        "checksum": snap.checksum,
        "size_bytes": snap.size_bytes,
        "status": status,
        "created_at": snap.created_at,
        "expires_at": snap.expires_at,
        "details": {"taken": snap.details, **({"deployer": dict(deployer)} if deployer else {})},
    }


# Who is deploying (or restoring): a pending snapshot names its process, so that another
# process can tell a deploy still running its migration from one that died (SIGKILL, a
# crash, a reboot); a restore's claim names its process the same way.


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    if fields and fields[0] in ("Z", "X"):
        return "zombie"  # dead, not yet reaped by its parent
    return fields[19] if len(fields) > 19 else None


def this_process(at: datetime) -> dict[str, Any]:
    """The identity a pending snapshot records: host, boot, pid, the pid's start, and when."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pid": pid,
        "process_start": _process_start(pid),
        "started_at": at.isoformat(),
    }


def process_alive(deployer: Mapping[str, Any] | None) -> bool:
    """Whether the process that recorded `deployer` (`this_process`: a deploy's, or the one
    that claimed a restore) may still be running.

    On this host it is gone when the host rebooted since, when no process has its pid, when
    that pid is a zombie, or when the pid now belongs to a process started at another time.
    A deployer on another host cannot be checked from here: it counts as alive, and its
    deploy is recovered by the next `mlops deploy`, `mlops rollback` or controller on its host.
    """
    if not deployer or deployer.get("pid") is None:
        return False
    if deployer.get("host") != socket.gethostname():
        return True
    boot = _boot_id()
    if deployer.get("boot") and boot and deployer["boot"] != boot:
        return False
    pid = int(deployer["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process holds that pid
    start = _process_start(pid)
    if start == "zombie":
        return False
    recorded = deployer.get("process_start")
    return not (recorded and start and start != recorded)


def check_present(row: Mapping[str, Any]) -> None:
    """Refuse, before anything changes, a restore whose snapshot is gone."""
    name = row["resource"]
    if row["status"] == EXPIRED:
        raise SnapshotMissing(
            f"the snapshot of {name!r} taken before release {row['revision']} was deleted by "
            "its retention policy; roll back with the data as it is by setting the policy "
            f"to keep (`mlops data add … {name} … --policy keep`)"
        )
    if not (Path(row["location"]) / "snapshot.json").is_file():
        raise SnapshotMissing(
            f"the snapshot of {name!r} taken before release {row['revision']} is missing from "
            f"{row['location']}; nothing was changed"
        )


def as_snapshot(row: Mapping[str, Any]) -> Snapshot:
    """The driver's view of a stored snapshot: the checksum a restore trusts is the store's."""
    created: datetime = row["created_at"]
    return Snapshot(
        resource=row["resource"],
        driver=row["driver"],
        location=row["location"],
        checksum=row["checksum"],
        size_bytes=row["size_bytes"],
        created_at=created,
        expires_at=row["expires_at"],
    )
