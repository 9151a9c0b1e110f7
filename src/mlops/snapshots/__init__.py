"""Data snapshots: copy a data resource before a release changes it, put it back on rollback.

Drivers: `SqliteSnapshot` (an SQLite file), `PostgresSnapshot` (a schema of a PostgreSQL
database), `DirectorySnapshot` (a folder), and `MemorySnapshot` (an in-memory fake for tests).
`driver_for(kind)` picks one by the name a data resource records.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlops.errors import BadReference
from mlops.snapshots.driver import Changes, RestoreResult, Snapshot, SnapshotDriver

if TYPE_CHECKING:
    from mlops.snapshots.directory import DirectorySnapshot
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

DRIVERS = {
    "sqlite": ("mlops.snapshots.sqlite", "SqliteSnapshot"),
    "postgresql": ("mlops.snapshots.postgresql", "PostgresSnapshot"),
    "directory": ("mlops.snapshots.directory", "DirectorySnapshot"),
}
"""Each driver by the name a data resource records: its module is imported when first used
(psycopg only for PostgreSQL resources)."""


def __getattr__(name: str) -> Any:
    for module, cls in DRIVERS.values():
        if cls == name:
            return getattr(importlib.import_module(module), cls)
    raise AttributeError(f"module 'mlops.snapshots' has no attribute {name!r}")


def driver_for(kind: str, **options: Any) -> SnapshotDriver:
    """The driver for a data resource of this kind (`sqlite`, `postgresql`, `directory`)."""
    try:
        module, name = DRIVERS[kind]
    except KeyError:
        raise BadReference(
            f"unknown data resource driver {kind!r}; known: {', '.join(sorted(DRIVERS))}"
        ) from None
    driver: SnapshotDriver = getattr(importlib.import_module(module), name)(**options)
    return driver
