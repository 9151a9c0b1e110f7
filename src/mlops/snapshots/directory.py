"""`DirectorySnapshot`: a folder of files.

Snapshot: each file is copied into the snapshot folder and hashed as copied; the manifest
maps each relative path to its SHA-256 and size (folders are listed too, so empty ones come
back). Symbolic links and special files are refused.

Checksum: SHA-256 of the canonical JSON of the sorted manifest.

Restore: the snapshot's files are copied into a folder next to the live one
(`.NAME.mlops-restore-TOKEN`, same file system) and verified; a journal file
(`.NAME.mlops-restore.json`) is written; then the two folders are exchanged in one atomic
`renameat2(RENAME_EXCHANGE)` (Linux), or, where that is missing, by two renames (live ->
aside, staged -> live). `recover(location)` finishes or undoes a restore a crash
interrupted, from the journal: after it, the live folder holds the old files or the
restored files, never a mix. Every restore and recovery holds an exclusive `flock` on
`.NAME.mlops-lock`, so two of them never interleave.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops.errors import (
    RestoreFailed,
    SnapshotFailed,
    SnapshotMissing,
    UnreadableFile,
    UnsupportedResource,
)
from mlops.snapshots.driver import (
    CHUNK,
    Changes,
    RestoreResult,
    Snapshot,
    canonical_sha256,
    corrupt,
    delete_snapshot_folder,
    discard_folder,
    durable_replace,
    fsync_dir,
    new_snapshot_folder,
    now_utc,
    read_meta,
    write_meta,
)

FILES = "files"
COUNTED_AS = (
    "files and folders compared by relative path with the snapshot's manifest: added "
    "(only live), removed (only in the snapshot), modified (SHA-256 or size differs)"
)
Manifest = dict[str, dict[str, Any]]
"""Relative path -> {"sha256", "size"} for a file, {"dir": True} for a folder."""

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def manifest_checksum(manifest: Manifest) -> str:
    return canonical_sha256(sorted(manifest.items()))


def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    stack = [""]
    while stack:
        prefix = stack.pop()
        with os.scandir(root / prefix if prefix else root) as entries:
            for entry in entries:
                rel = f"{prefix}/{entry.name}" if prefix else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append(rel)
                    yield rel, entry
                elif entry.is_file(follow_symlinks=False):
                    yield rel, entry
                else:
                    raise UnsupportedResource(
                        f"{root / rel} is a symbolic link or a special file; the directory "
                        "snapshot driver copies regular files and folders only"
                    )


def _copy_hashing(source: Path, target: Path, durable: bool) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as src, open(target, "xb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        if durable:
            dst.flush()
            os.fsync(dst.fileno())
    shutil.copystat(source, target)
    return digest.hexdigest(), size


def _hash(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_manifest(root: Path) -> Manifest:
    manifest: Manifest = {}
    for rel, entry in _walk(root):
        if entry.is_dir(follow_symlinks=False):
            manifest[rel] = {"dir": True}
        else:
            sha, size = _hash(Path(entry.path))
            manifest[rel] = {"sha256": sha, "size": size}
    return manifest


def copy_tree(source: Path, target: Path, *, durable: bool) -> Manifest:
    """Copy `source` into the new folder `target`, hashing what was written."""
    target.mkdir()
    manifest: Manifest = {}
    folders = [target]
    for rel, entry in sorted(_walk(source), key=lambda item: item[0]):
        if entry.is_dir(follow_symlinks=False):
            (target / rel).mkdir()
            folders.append(target / rel)
            manifest[rel] = {"dir": True}
        else:
            sha, size = _copy_hashing(Path(entry.path), target / rel, durable)
            manifest[rel] = {"sha256": sha, "size": size}
    if durable:
        for folder in folders:
            fsync_dir(folder)
    return manifest


def count_changes(before: Manifest, after: Manifest) -> Changes:
    added = sum(1 for rel in after if rel not in before)
    removed = sum(1 for rel in before if rel not in after)
    modified = sum(1 for rel in after if rel in before and after[rel] != before[rel])
    return Changes("files", added, removed, modified)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step; False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


class DirectorySnapshot:
    """Snapshots of a folder of files."""

    name = "directory"

    def __init__(
        self,
        *,
        durable: bool = True,
        exchange: bool = True,
        now: Callable[[], datetime] = now_utc,
        pause_before_swap: Callable[[], None] | None = None,
    ) -> None:
        self.durable = durable
        """fsync every copied file and folder (snapshot and restore), so that a power cut
        cannot leave torn files behind a journal or a `snapshot.json` that names them."""
        self.exchange = exchange
        """Swap with RENAME_EXCHANGE where the system has it; False forces two renames."""
        self._now = now
        self._pause_before_swap = pause_before_swap

    @staticmethod
    def _paths(location: str) -> tuple[Path, Path, Path]:
        live = Path(location).absolute()
        journal = live.parent / f".{live.name}.mlops-restore.json"
        lock = live.parent / f".{live.name}.mlops-lock"
        return live, journal, lock

    @contextmanager
    def _locked(self, location: str) -> Iterator[None]:
        _, _, lock = self._paths(location)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _live(self, location: str) -> Path:
        live = Path(location)
        if not live.is_dir():
            raise UnreadableFile(f"folder {live} does not exist")
        return live

    def snapshot(self, location: str, into: Path, *, resource: str) -> Snapshot:
        live = self._live(location)
        at = self._now()
        folder = new_snapshot_folder(into, resource, at)
        try:
            manifest = copy_tree(live, folder / FILES, durable=self.durable)
            snap = Snapshot(
                resource=resource,
                driver=self.name,
                location=str(folder),
                checksum=manifest_checksum(manifest),
                size_bytes=sum(int(e.get("size", 0)) for e in manifest.values()),
                created_at=at,
                details={
                    "files": sum(1 for e in manifest.values() if "sha256" in e),
                    "source": str(live),
                },
            )
            write_meta(folder, snap, {"manifest": manifest})
        except BaseException as exc:
            discard_folder(folder)
            if isinstance(exc, OSError):
                raise SnapshotFailed(f"cannot snapshot folder {live}: {exc}") from None
            raise
        return snap

    def checksum(self, location: str) -> str:
        self.recover(location)
        return manifest_checksum(read_manifest(self._live(location)))

    def _checked(self, snapshot: Snapshot) -> Manifest:
        meta = read_meta(snapshot)
        manifest: Manifest = meta.get("manifest", {})
        if meta.get("checksum") != snapshot.checksum or manifest_checksum(manifest) != (
            snapshot.checksum
        ):
            raise corrupt(snapshot, "its manifest is not the one its checksum names")
        if not (Path(snapshot.location) / FILES).is_dir():
            raise SnapshotMissing(
                f"snapshot of {snapshot.resource!r} is missing its {FILES}/ folder "
                f"(in {snapshot.location})"
            )
        return manifest

    def changes_since(self, snapshot: Snapshot, location: str) -> Changes:
        manifest = self._checked(snapshot)
        self.recover(location)
        live = Path(location)
        return count_changes(manifest, read_manifest(live) if live.is_dir() else {})

    def restore(self, snapshot: Snapshot, location: str) -> RestoreResult:
        started = time.monotonic()
        manifest = self._checked(snapshot)
        live, journal, _ = self._paths(location)
        with self._locked(location):
            self._recover(location)
            staged = live.parent / f".{live.name}.mlops-restore-{secrets.token_hex(4)}"
            try:
                copied = copy_tree(Path(snapshot.location) / FILES, staged, durable=self.durable)
            except FileNotFoundError as exc:
                discard_folder(staged)
                raise SnapshotMissing(
                    f"snapshot of {snapshot.resource!r} lost a file while it was read "
                    f"({exc.filename}); nothing was restored"
                ) from None
            except OSError as exc:
                discard_folder(staged)
                raise RestoreFailed(
                    f"cannot restore {snapshot.resource!r}: copying the snapshot failed ({exc}); "
                    "nothing was changed"
                ) from None
            if copied != manifest:
                discard_folder(staged)
                missing = sorted(k for k in manifest if k not in copied)
                if missing:
                    raise SnapshotMissing(
                        f"snapshot of {snapshot.resource!r} at {snapshot.location} is missing "
                        f"{len(missing)} file(s), e.g. {missing[0]!r}; nothing was restored"
                    )
                wrong = sorted(k for k in {*copied, *manifest} if copied.get(k) != manifest.get(k))
                raise corrupt(snapshot, f"{len(wrong)} file(s) changed, e.g. {wrong[0]!r}")
            before = read_manifest(live) if live.is_dir() else {}
            changes = count_changes(manifest, before)
            try:
                self._swap(live, staged, journal)
            except OSError as exc:
                self._recover(location)
                raise RestoreFailed(
                    f"cannot restore {snapshot.resource!r}: swapping folders failed ({exc})"
                ) from None
            checksum = manifest_checksum(read_manifest(live))
            if checksum != snapshot.checksum:
                self._undo(live, journal)
                raise RestoreFailed(
                    f"restore of {snapshot.resource!r} did not verify (the folder changed while "
                    "it was restored); it was undone"
                )
            self._finish(live, journal)
        return RestoreResult.verified_restore(snapshot, changes, COUNTED_AS, started)

    def _swap(self, live: Path, staged: Path, journal: Path) -> None:
        aside = live.parent / (staged.name + "-old")
        record = {"staged": str(staged), "aside": str(aside), "exchanged": False}
        if live.exists() and self.exchange:
            record["exchanged"] = True
        _write_journal(journal, record)
        if self._pause_before_swap is not None:
            self._pause_before_swap()
        if not live.exists():
            os.rename(staged, live)
        elif not (record["exchanged"] and _exchange(staged, live)):
            if record["exchanged"]:
                record["exchanged"] = False
                _write_journal(journal, record)
            os.rename(live, aside)
            os.rename(staged, live)
        fsync_dir(live.parent)

    def _undo(self, live: Path, journal: Path) -> None:
        """Put the old folder back after a swap whose result did not verify."""
        record = json.loads(journal.read_text())
        old = Path(record["staged"] if record["exchanged"] else record["aside"])
        if not (old.is_dir() and _exchange(old, live)):
            broken = Path(record["staged"] + "-unverified")
            os.rename(live, broken)
            if old.is_dir():
                os.rename(old, live)
            discard_folder(broken)
        self._finish(live, journal)

    def _finish(self, live: Path, journal: Path) -> None:
        record = json.loads(journal.read_text())
        for leftover in (record["staged"], record["aside"]):
            if Path(leftover) != live:
                discard_folder(leftover)
        journal.unlink()
        fsync_dir(live.parent)

    def recover(self, location: str) -> None:
        live, journal, _ = self._paths(location)
        if not journal.exists() and not any(live.parent.glob(f".{live.name}.mlops-restore-*")):
            return
        with self._locked(location):
            self._recover(location)

    def _recover(self, location: str) -> None:
        """Complete the interrupted restore if the old folder had been moved aside, else drop
        the staged copy (the live folder was never touched). Call with the lock held."""
        live, journal, _ = self._paths(location)
        if journal.exists():
            record = json.loads(journal.read_text())
            staged, aside = Path(record["staged"]), Path(record["aside"])
            if not live.exists():
                if staged.is_dir():
                    os.rename(staged, live)
                elif aside.is_dir():
                    os.rename(aside, live)
            self._finish(live, journal)
        for leftover in live.parent.glob(f".{live.name}.mlops-restore-*"):
            if leftover.is_dir() and not leftover.is_symlink():
                discard_folder(leftover)

    def delete(self, snapshot: Snapshot) -> None:
        delete_snapshot_folder(snapshot)


def _write_journal(journal: Path, record: dict[str, Any]) -> None:
    tmp = journal.with_name(journal.name + ".tmp")
    tmp.write_text(json.dumps(record))
    durable_replace(tmp, journal)
