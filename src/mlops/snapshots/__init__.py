"""Data snapshots: copy a data resource before a release changes it, put it back on rollback.

Drivers: `SqliteSnapshot` (an SQLite file), `PostgresSnapshot` (a schema of a PostgreSQL
database), `DirectorySnapshot` (a folder), and `MemorySnapshot` (an in-memory fake for tests).
`driver_for(kind)` picks one by the name a data resource records.
"""

from __future__ import annotations

from typing import Any

from mlops.errors import BadReference
from mlops.snapshots.directory import DirectorySnapshot
from mlops.snapshots.driver import Changes, RestoreResult, Snapshot, SnapshotDriver
from mlops.snapshots.postgresql import PostgresSnapshot
from mlops.snapshots.sqlite import SqliteSnapshot

__all__ = [
    "DRIVERS",
    "Changes",
    "DirectorySnapshot",
    "PostgresSnapshot",
    "RestoreResult",
    "Snapshot",
    "SnapshotDriver",
    "SqliteSnapshot",
    "driver_for",
]

DRIVERS: dict[str, type[SqliteSnapshot] | type[PostgresSnapshot] | type[DirectorySnapshot]] = {
    "sqlite": SqliteSnapshot,
    "postgresql": PostgresSnapshot,
    "directory": DirectorySnapshot,
}


def driver_for(kind: str, **options: Any) -> SnapshotDriver:
    """The driver for a data resource of this kind (`sqlite`, `postgresql`, `directory`)."""
    try:
        cls = DRIVERS[kind]
    except KeyError:
        raise BadReference(
            f"unknown data resource driver {kind!r}; known: {', '.join(sorted(DRIVERS))}"
        ) from None
    driver: SnapshotDriver = cls(**options)
    return driver
