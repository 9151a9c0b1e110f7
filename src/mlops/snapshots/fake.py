"""`MemorySnapshot`: an in-memory snapshot driver for tests of other layers.

A resource is a dict of key -> value kept in `resources[location]`; a snapshot is a copy of
it. Every call is appended to `calls`; `fail_next[operation]` makes the next call of that
operation raise the given error; `corrupt(snapshot)` changes a copy so its restore is
refused, as a real driver refuses changed bytes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from mlops.errors import MlopsError, SnapshotMissing, UnreadableFile
from mlops.snapshots.driver import (
    Changes,
    RestoreResult,
    Snapshot,
    canonical_sha256,
    corrupt,
    now_utc,
)

COUNTED_AS = "keys added, removed or with another value"


class MemorySnapshot:
    name = "memory"

    def __init__(self, *, now: Callable[[], datetime] = now_utc) -> None:
        self.resources: dict[str, dict[str, str]] = {}
        self.copies: dict[str, dict[str, str]] = {}
        self.calls: list[tuple[str, ...]] = []
        self.fail_next: dict[str, MlopsError] = {}
        self._now = now
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _call(self, operation: str, *args: str) -> None:
        with self._lock:
            self.calls.append((operation, *args))
            error = self.fail_next.pop(operation, None)
        if error is not None:
            raise error

    def _resource(self, location: str) -> dict[str, str]:
        if location not in self.resources:
            raise UnreadableFile(f"no resource at {location}")
        return self.resources[location]

    def _copy(self, snapshot: Snapshot) -> dict[str, str]:
        if snapshot.location not in self.copies:
            raise SnapshotMissing(f"snapshot of {snapshot.resource!r} is missing")
        return self.copies[snapshot.location]

    def snapshot(self, location: str, into: Path, *, resource: str) -> Snapshot:
        self._call("snapshot", location, resource)
        data = dict(self._resource(location))
        copy_location = f"{into}/{resource}-{next(self._ids)}"
        self.copies[copy_location] = data
        return Snapshot(
            resource=resource,
            driver=self.name,
            location=copy_location,
            checksum=canonical_sha256(data),
            size_bytes=sum(len(k) + len(v) for k, v in data.items()),
            created_at=self._now(),
            details={"keys": len(data)},
        )

    def checksum(self, location: str) -> str:
        self._call("checksum", location)
        return canonical_sha256(self._resource(location))

    def changes_since(self, snapshot: Snapshot, location: str) -> Changes:
        self._call("changes_since", snapshot.location, location)
        return self._diff(self._copy(snapshot), self._resource(location))

    @staticmethod
    def _diff(before: dict[str, str], after: dict[str, str]) -> Changes:
        return Changes(
            "keys",
            added=sum(1 for k in after if k not in before),
            removed=sum(1 for k in before if k not in after),
            modified=sum(1 for k in after if k in before and after[k] != before[k]),
        )

    def restore(self, snapshot: Snapshot, location: str) -> RestoreResult:
        started = time.monotonic()
        self._call("restore", snapshot.location, location)
        copy = self._copy(snapshot)
        if canonical_sha256(copy) != snapshot.checksum:
            raise corrupt(snapshot, "its content changed")
        changes = self._diff(copy, self._resource(location))
        self.resources[location] = dict(copy)
        return RestoreResult.verified_restore(snapshot, changes, COUNTED_AS, started)

    def recover(self, location: str) -> None:
        self._call("recover", location)

    def delete(self, snapshot: Snapshot) -> None:
        self._call("delete", snapshot.location)
        self.copies.pop(snapshot.location, None)

    def corrupt(self, snapshot: Snapshot) -> None:
        self._copy(snapshot)["\x00corrupted"] = "yes"
