"""The `SnapshotDriver` plug point and the values it trades in.

A driver copies one data resource (an SQLite file, a PostgreSQL schema, a folder) into a
snapshot folder, and puts a copy back: verified (the resource's checksum equals the
snapshot's before the restore counts as done) and atomic (a crash at any moment leaves the
old data or the restored data, never a mix). A snapshot folder holds the copy and a
`snapshot.json` with what the driver needs to check and restore it; a `Snapshot` value can
be rebuilt from a store row (location and checksum are what a restore trusts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from mlops.core.retention import RetentionPolicy, expires_at
from mlops.errors import SnapshotCorrupt, SnapshotDeleteFailed, SnapshotMissing

META = "snapshot.json"
CHUNK = 1 << 20
log = logging.getLogger("mlops.snapshots")


@dataclass(frozen=True)
class Snapshot:
    resource: str
    """The data resource's name in its deployment (e.g. `features`)."""
    driver: str
    """`sqlite`, `postgresql`, `directory` (or `memory` for the fake)."""
    location: str
    """Where the copy is: a snapshot folder."""
    checksum: str
    """The resource's content checksum (SHA-256, hex) when the copy was taken."""
    size_bytes: int
    created_at: datetime
    expires_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """What the copy holds, for people (tables and rows, files); a restore does not need it."""

    def with_policy(self, policy: RetentionPolicy) -> Snapshot:
        return replace(self, expires_at=expires_at(self.created_at, policy))


@dataclass(frozen=True)
class Changes:
    """How the live resource differs from a snapshot: the writes a restore would discard.

    For SQL drivers `added`, `removed`, `modified` count rows; for a folder they count files
    and folders. See docs/snapshots.md for exactly how each driver counts.
    """

    unit: str
    added: int = 0
    removed: int = 0
    modified: int = 0
    tables_added: int = 0
    tables_dropped: int = 0
    tables_altered: int = 0

    @property
    def total(self) -> int:
        return (
            self.added
            + self.removed
            + self.modified
            + self.tables_added
            + self.tables_dropped
            + self.tables_altered
        )

    def describe(self) -> str:
        if self.total == 0:
            return "no changes"
        one = self.unit.removesuffix("s")
        parts = [
            f"{n} {self.unit if n != 1 else one} {what}"
            for n, what in (
                (self.added, "added"),
                (self.removed, "removed"),
                (self.modified, "modified"),
            )
            if n
        ]
        parts += [
            f"{n} table{'s' if n != 1 else ''} {what}"
            for n, what in (
                (self.tables_added, "added"),
                (self.tables_dropped, "dropped"),
                (self.tables_altered, "altered"),
            )
            if n
        ]
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "added": self.added,
            "removed": self.removed,
            "modified": self.modified,
            "tables_added": self.tables_added,
            "tables_dropped": self.tables_dropped,
            "tables_altered": self.tables_altered,
            "total": self.total,
        }


@dataclass(frozen=True)
class RestoreResult:
    checksum: str
    """The resource's checksum after the restore; always equal to the snapshot's."""
    verified: bool
    bytes: int
    """The size of the snapshot that was put back."""
    seconds: float
    writes_discarded: int
    """How many writes made since the snapshot the restore undid (`changes.total`)."""
    writes_counted_as: str
    """What was counted, in words, for the rollback event."""
    changes: Changes

    @classmethod
    def verified_restore(
        cls, snapshot: Snapshot, changes: Changes, counted_as: str, started: float
    ) -> RestoreResult:
        """A restore that put `snapshot` back and verified it; `started` is a monotonic time."""
        return cls(
            checksum=snapshot.checksum,
            verified=True,
            bytes=snapshot.size_bytes,
            seconds=time.monotonic() - started,
            writes_discarded=changes.total,
            writes_counted_as=counted_as,
            changes=changes,
        )


@runtime_checkable
class SnapshotDriver(Protocol):
    """Copies a data resource and puts the copy back, verified and atomically.

    `location` is the resource: a file path, a folder path or a database URL. Every method
    raises an `MlopsError`: `SnapshotMissing`, `SnapshotCorrupt` (the copy was changed;
    nothing restored), `RestoreFailed` (nothing restored), `SnapshotFailed`,
    `UnsupportedResource`, `UnreadableFile`.
    """

    name: str

    def snapshot(self, location: str, into: Path, *, resource: str) -> Snapshot:
        """Copy the resource, consistently even while others write, into a new folder in `into`."""
        ...

    def checksum(self, location: str) -> str:
        """The resource's content checksum: equal data gives an equal checksum."""
        ...

    def changes_since(self, snapshot: Snapshot, location: str) -> Changes:
        """How the resource differs from the snapshot now."""
        ...

    def restore(self, snapshot: Snapshot, location: str) -> RestoreResult:
        """Put the snapshot back: all of it, verified, or nothing (and raise)."""
        ...

    def recover(self, location: str) -> None:
        """Finish or undo a restore that a crash interrupted; a no-op when there is none."""
        ...

    def delete(self, snapshot: Snapshot) -> None:
        """Remove the snapshot's files; deleting a missing snapshot is a no-op. Raises
        `SnapshotDeleteFailed` when files are left that could not be removed."""
        ...


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_snapshot_folder(into: Path, resource: str, at: datetime) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    stamp = at.strftime("%Y%m%dT%H%M%S")
    folder = into / f"{resource}-{stamp}-{secrets.token_hex(4)}"
    folder.mkdir()
    return folder


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_meta(folder: Path, snapshot: Snapshot, payload: dict[str, Any]) -> None:
    """Write `snapshot.json` last, durably: a folder without it is not a snapshot."""
    meta = {
        "format": 1,
        "resource": snapshot.resource,
        "driver": snapshot.driver,
        "checksum": snapshot.checksum,
        "size_bytes": snapshot.size_bytes,
        "created_at": snapshot.created_at.isoformat(),
        "details": snapshot.details,
        **payload,
    }
    tmp = folder / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    durable_replace(tmp, folder / META)
    fsync_dir(folder.parent)


def read_meta(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot's `snapshot.json`, checked to be this driver's and readable."""
    path = Path(snapshot.location) / META
    if not path.is_file():
        raise SnapshotMissing(
            f"snapshot of {snapshot.resource!r} is missing: no {META} in {snapshot.location}"
        )
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotCorrupt(
            f"snapshot of {snapshot.resource!r} at {snapshot.location} is unreadable: {exc}"
        ) from None
    if meta.get("driver") != snapshot.driver:
        raise SnapshotCorrupt(
            f"snapshot at {snapshot.location} was made by driver {meta.get('driver')!r}, "
            f"not {snapshot.driver!r}"
        )
    return meta


def load_snapshot(location: str | Path) -> Snapshot:
    """The `Snapshot` a folder describes, trusting its own checksum (for tools and tests;
    a restore on rollback takes the checksum from the store)."""
    path = Path(location) / META
    try:
        meta = json.loads(path.read_text())
        return Snapshot(
            resource=meta["resource"],
            driver=meta["driver"],
            location=str(location),
            checksum=meta["checksum"],
            size_bytes=int(meta["size_bytes"]),
            created_at=datetime.fromisoformat(meta["created_at"]),
            details=meta.get("details", {}),
        )
    except FileNotFoundError:
        raise SnapshotMissing(f"no snapshot at {location} (no {META})") from None
    except (OSError, ValueError, KeyError) as exc:
        raise SnapshotCorrupt(f"snapshot at {location} is unreadable: {exc}") from None


def require_file(snapshot: Snapshot, path: Path) -> None:
    if not path.is_file():
        raise SnapshotMissing(
            f"snapshot of {snapshot.resource!r} is missing its file {path.name} "
            f"(in {snapshot.location})"
        )


def corrupt(snapshot: Snapshot, what: str) -> SnapshotCorrupt:
    return SnapshotCorrupt(
        f"snapshot of {snapshot.resource!r} at {snapshot.location} is corrupt: {what}; "
        "nothing was restored"
    )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(source: Path, target: Path) -> None:
    with open(source, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)
    fsync_dir(target.parent)


ErrorInfo = tuple[type[BaseException], BaseException, TracebackType]


def delete_snapshot_folder(snapshot: Snapshot) -> None:
    """Remove a snapshot's folder; a folder (or file) already gone is not an error, any other
    failure raises `SnapshotDeleteFailed` with the path and the cause."""

    def failed(path: str, cause: BaseException) -> SnapshotDeleteFailed:
        return SnapshotDeleteFailed(
            f"cannot delete the snapshot of {snapshot.resource!r} at {snapshot.location}: "
            f"{path}: {cause}"
        )

    def skip_gone(_: object, path: str, info: ErrorInfo) -> None:
        if not isinstance(info[1], FileNotFoundError):
            raise failed(path, info[1]) from None

    try:
        shutil.rmtree(snapshot.location, onerror=skip_gone)
    except OSError as exc:
        raise failed(snapshot.location, exc) from None


def discard_folder(location: str | Path) -> None:
    """Remove a half-written folder on a failure path, as far as possible; what is left is
    logged once at WARNING with its first cause (the failure being handled matters more)."""
    left: list[tuple[str, BaseException]] = []

    def failed(_: object, path: str, info: ErrorInfo) -> None:
        if not isinstance(info[1], FileNotFoundError):
            left.append((path, info[1]))

    shutil.rmtree(location, onerror=failed)
    if left:
        path, cause = left[0]
        log.warning(
            "could not remove %s: %d path(s) left, the first %s: %s",
            location,
            len(left),
            path,
            cause,
        )
