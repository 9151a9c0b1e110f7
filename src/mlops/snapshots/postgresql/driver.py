"""`PostgresSnapshot`: the driver, composing the session, the catalog, the copy, the diff and
the restore into the `SnapshotDriver` operations."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

from mlops.errors import MlopsError, RestoreFailed, SnapshotFailed
from mlops.snapshots.driver import (
    Changes,
    RestoreResult,
    Snapshot,
    delete_snapshot_folder,
    discard_folder,
    folder_size,
    new_snapshot_folder,
    now_utc,
    write_meta,
)
from mlops.snapshots.postgresql.catalog import (
    compose_checksum,
    key_of,
    read_catalog,
    read_sequences,
    snapshot_checksum,
)
from mlops.snapshots.postgresql.copy import checked_meta, copy_out, stage_temp, write_tables
from mlops.snapshots.postgresql.diff import count_changes
from mlops.snapshots.postgresql.restore import restore_schema
from mlops.snapshots.postgresql.session import (
    Connection,
    Locks,
    connect,
    lock_timeout,
    relation,
)

COUNTED_AS = (
    "rows paired by primary key between the live tables and the snapshot: added (only "
    "live), removed (only in the snapshot), modified (the text of a shared column differs); "
    "tables without a key are compared as multisets of rows; a table added, dropped or with "
    "another definition counts once more"
)


class PostgresSnapshot:
    """Snapshots of the tables of one schema, given as a URL (`?schema=` names the schema)."""

    name = "postgresql"

    def __init__(
        self,
        *,
        schema: str | None = None,
        lock_timeout_s: float = 30.0,
        lock_attempt_s: float = 0.2,
        connect_timeout_s: int = 10,
        now: Callable[[], datetime] = now_utc,
    ) -> None:
        self.schema = schema
        self.lock_timeout_s = lock_timeout_s
        self.lock_attempt_s = lock_attempt_s
        self.connect_timeout_s = connect_timeout_s
        self._now = now

    @contextmanager
    def _connect(self, location: str, error: type[MlopsError]) -> Iterator[tuple[Connection, str]]:
        with connect(location, self.schema, self.connect_timeout_s, error) as opened:
            yield opened

    def snapshot(self, location: str, into: Path, *, resource: str) -> Snapshot:
        at = self._now()
        with self._connect(location, SnapshotFailed) as (conn, schema):
            folder = new_snapshot_folder(into, resource, at)
            try:
                return self._snapshot(conn, schema, folder, resource, at)
            except BaseException as exc:
                discard_folder(folder)
                if isinstance(exc, psycopg.Error):
                    raise SnapshotFailed(
                        f"cannot snapshot schema {schema!r}: {str(exc).strip()}"
                    ) from None
                raise

    def _snapshot(
        self, conn: Connection, schema: str, folder: Path, resource: str, at: datetime
    ) -> Snapshot:
        """One REPEATABLE READ READ ONLY transaction holding ACCESS SHARE on every table."""
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction(), conn.cursor() as cur:
            catalog = read_catalog(cur, schema, strict=True)
            if catalog.definitions:
                listed = sql.SQL(", ").join(relation(schema, t) for t in catalog.definitions)
                cur.execute(lock_timeout(self.lock_timeout_s))
                cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(listed))
            entries = write_tables(cur, schema, catalog, folder)
            sequences = read_sequences(cur, schema)
        snap = Snapshot(
            resource=resource,
            driver=self.name,
            location=str(folder),
            checksum=snapshot_checksum(entries),
            size_bytes=folder_size(folder),
            created_at=at,
            details={"schema": schema, "tables": {n: e["rows"] for n, e in entries.items()}},
        )
        write_meta(folder, snap, {"schema": schema, "tables": entries, "sequences": sequences})
        return snap

    def checksum(self, location: str) -> str:
        with self._connect(location, SnapshotFailed) as (conn, schema):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                with conn.transaction(), conn.cursor() as cur:
                    catalog = read_catalog(cur, schema)
                    hashes = {
                        name: copy_out(cur, relation(schema, name), key_of(definition))[0]
                        for name, definition in catalog.definitions.items()
                    }
                    return compose_checksum(catalog.definitions, hashes)
            except psycopg.Error as exc:
                raise SnapshotFailed(f"cannot read schema {schema!r}: {exc}") from None

    def changes_since(self, snapshot: Snapshot, location: str) -> Changes:
        meta = checked_meta(snapshot)
        folder = Path(snapshot.location)
        with self._connect(location, SnapshotFailed) as (conn, schema):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            try:
                with conn.cursor() as cur:
                    live = read_catalog(cur, schema)
                    staged = {
                        name: stage_temp(cur, i, entry, folder)
                        for i, (name, entry) in enumerate(sorted(meta["tables"].items()))
                    }
                    return count_changes(cur, schema, live, meta["tables"], staged)[0]
            except psycopg.Error as exc:
                raise SnapshotFailed(f"cannot compare schema {schema!r}: {exc}") from None
            finally:
                conn.rollback()

    def restore(self, snapshot: Snapshot, location: str) -> RestoreResult:
        started = time.monotonic()
        meta = checked_meta(snapshot)
        locks = Locks(self.lock_timeout_s, self.lock_attempt_s)
        with self._connect(location, RestoreFailed) as (conn, schema):
            conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            try:
                with conn.cursor() as cur:
                    changes = restore_schema(cur, schema, snapshot, meta, locks)
                conn.commit()
            except BaseException as exc:
                conn.rollback()
                if isinstance(exc, psycopg.Error):
                    raise RestoreFailed(
                        f"restore of {snapshot.resource!r} failed and was undone: "
                        f"{str(exc).strip()}"
                    ) from None
                raise
        return RestoreResult.verified_restore(snapshot, changes, COUNTED_AS, started)

    def recover(self, location: str) -> None:
        """Nothing to do: an interrupted restore is one transaction, which PostgreSQL undid."""

    def delete(self, snapshot: Snapshot) -> None:
        delete_snapshot_folder(snapshot)
