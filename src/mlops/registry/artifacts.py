"""The content-addressed artifact store: files and folders kept by SHA-256, verified on every read.

A file artifact is one blob named by its hash. A folder artifact (an MLflow model) is a
manifest blob that lists each file's relative path, hash and size, plus a copy of the
folder; its address is the manifest's hash, and reading it checks every file and that no
file was added.

With `shared` blobs (the store itself, when hosts share a PostgreSQL store) the folder on
this host is a cache: every blob registered here is also put there (a folder's manifest and
each of its files, by their own hashes), and a blob missing here or failing its hash is
fetched from there, checked, and put in the cache before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from mlops.errors import IntegrityError, NotPlainFolder, UnreadableFile

CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredArtifact:
    sha256: str
    kind: str
    """`file` or `dir`."""
    size_bytes: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def plain_files(folder: Path) -> list[Path]:
    """Every regular file under `folder`, sorted, following no link. Any symbolic link (to a
    file, a folder, or itself), FIFO, socket or device under it raises `NotPlainFolder`
    naming it: a link could pull a file from outside the folder into the store, or loop."""
    files: list[Path] = []
    pending = [folder]
    while pending:  # iterative: a deep tree cannot exhaust the stack
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_symlink():
                    rel = path.relative_to(folder).as_posix()
                    raise NotPlainFolder(
                        f"{rel} is a symbolic link (to {os.readlink(path)!r}): "
                        "a model folder may hold no links; copy the file in instead"
                    )
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                elif entry.is_file(follow_symlinks=False):
                    files.append(path)
                else:
                    rel = path.relative_to(folder).as_posix()
                    raise NotPlainFolder(f"{rel} is not a regular file or folder")
    return sorted(files)


def check_plain_folder(folder: Path) -> None:
    """Refuse a folder to register (`UnreadableFile`) that `plain_files` would refuse."""
    try:
        plain_files(folder)
    except NotPlainFolder as exc:
        raise UnreadableFile(f"{folder}: {exc}") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read {folder}: {exc.strerror or exc}") from None


def _manifest(folder: Path) -> tuple[bytes, int]:
    entries = []
    total = 0
    for path in plain_files(folder):
        size = path.stat().st_size
        total += size
        entries.append(
            {"path": path.relative_to(folder).as_posix(), "sha256": sha256_file(path), "size": size}
        )
    return json.dumps({"files": entries}, sort_keys=True, separators=(",", ":")).encode(), total


class SharedBlobs(Protocol):
    """Where every host finds a blob's bytes."""

    def has(self, sha256: str) -> bool: ...

    def put(self, sha256: str, source: BinaryIO) -> None: ...

    def fetch(self, sha256: str) -> Iterator[bytes] | None:
        """The blob's bytes in pieces, or None if it is not there."""
        ...


class ArtifactStore:
    def __init__(self, root: Path, shared: SharedBlobs | None = None) -> None:
        self.root = root
        self.shared = shared

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def tree_path(self, sha256: str) -> Path:
        return self.root / "trees" / sha256

    def put_dir(self, source: Path) -> StoredArtifact:
        try:
            return self._put_dir(source)
        except NotPlainFolder as exc:
            raise UnreadableFile(f"{source}: {exc}") from None
        except OSError as exc:
            raise UnreadableFile(f"cannot store {source}: {exc.strerror or exc}") from None

    def _tmp(self) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def _put_bytes_atomically(self, data_path: Path, sha256: str) -> None:
        target = self.blob_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(data_path, target)

    def put_bytes(self, data: bytes) -> StoredArtifact:
        sha = hashlib.sha256(data).hexdigest()
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp())
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._put_bytes_atomically(Path(tmp_name), sha)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        self._share(sha, self.blob_path(sha))
        return StoredArtifact(sha, "file", len(data))

    def _share(self, sha256: str, path: Path) -> None:
        """Put a blob this host holds where every host finds it, unless it is there."""
        if self.shared is not None and not self.shared.has(sha256):
            with open(path, "rb") as source:
                self.shared.put(sha256, source)

    def _share_tree(self, sha256: str, manifest: bytes) -> None:
        if self.shared is None:
            return
        tree = self.tree_path(sha256)
        for entry in json.loads(manifest)["files"]:
            self._share(entry["sha256"], tree / entry["path"])
        self._share(sha256, self.blob_path(sha256))

    def _fetch(self, sha256: str, target: Path) -> bool:
        """Copy blob `sha256` from the shared blobs to `target`, checked on the way; False
        when there are no shared blobs or they do not hold it."""
        pieces = self.shared.fetch(sha256) if self.shared is not None else None
        if pieces is None:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp())
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as handle:
                for piece in pieces:
                    digest.update(piece)
                    handle.write(piece)
                handle.flush()
                os.fsync(handle.fileno())
            if digest.hexdigest() != sha256:
                raise IntegrityError(
                    f"artifact {sha256[:12]} is corrupt in the store: it hashes to "
                    f"{digest.hexdigest()[:12]}; re-register the model from its source"
                )
            os.replace(tmp_name, target)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        return True

    def _put_dir(self, source: Path) -> StoredArtifact:
        manifest, size = _manifest(source)
        sha = hashlib.sha256(manifest).hexdigest()
        tree = self.tree_path(sha)
        if not (tree.exists() and self._tree_matches(sha, manifest)):
            staging = Path(tempfile.mkdtemp(dir=self._tmp()))
            try:
                shutil.copytree(source, staging / "tree", symlinks=True)  # a link is refused below
                if _manifest(staging / "tree")[0] != manifest:
                    raise UnreadableFile(f"{source} changed while it was being stored; try again")
                tree.parent.mkdir(parents=True, exist_ok=True)
                if tree.exists():
                    shutil.rmtree(tree)
                os.replace(staging / "tree", tree)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        self.put_bytes(manifest)
        self._share_tree(sha, manifest)
        return StoredArtifact(sha, "dir", size)

    def _tree_matches(self, sha256: str, manifest: bytes) -> bool:
        try:
            return _manifest(self.tree_path(sha256))[0] == manifest
        except NotPlainFolder:
            return False  # replaced by a fresh copy

    def read_file(self, sha256: str) -> bytes:
        """The blob's bytes, after checking they still hash to their address (fetched from
        the shared blobs first if they are missing or corrupt here)."""
        try:
            data = self._read_local(sha256)
        except IntegrityError:
            if not self._fetch(sha256, self.blob_path(sha256)):
                raise
            return self._read_local(sha256)
        self._share(sha256, self.blob_path(sha256))  # registered before blobs were shared
        return data

    def _read_local(self, sha256: str) -> bytes:
        path = self.blob_path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"artifact {sha256[:12]} is missing from {self.root}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"artifact {sha256[:12]} is corrupt: its file {path} hashes to {actual[:12]}; "
                "re-register the model from its source"
            )
        return data

    def verify(self, sha256: str, kind: str) -> None:
        """Check a stored artifact as a load would, without loading it (a file is hashed in
        chunks, never held whole); raise `IntegrityError` if it is missing or corrupt."""
        if kind == "dir":
            self.verified_dir(sha256)
            return
        try:
            self._verify_local(sha256)
        except IntegrityError:
            if not self._fetch(sha256, self.blob_path(sha256)):
                raise
            self._verify_local(sha256)

    def _verify_local(self, sha256: str) -> None:
        path = self.blob_path(sha256)
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            raise IntegrityError(f"artifact {sha256[:12]} is missing from {self.root}") from None
        except OSError as exc:
            raise IntegrityError(
                f"artifact {sha256[:12]} cannot be read: {exc.strerror or exc}"
            ) from None
        if actual != sha256:
            raise IntegrityError(
                f"artifact {sha256[:12]} is corrupt: its file {path} hashes to {actual[:12]}; "
                "re-register the model from its source"
            )

    def verified_dir(self, sha256: str) -> Path:
        """The folder of a `dir` artifact, after checking its manifest and every file in it
        (rebuilt from the shared blobs first if it is missing or differs here)."""
        manifest = self.read_file(sha256)
        try:
            tree = self._verified_tree(sha256, manifest)
        except IntegrityError:
            if self.shared is None:
                raise
            self._rebuild_tree(sha256, manifest)
            return self._verified_tree(sha256, manifest)
        self._share_tree(sha256, manifest)
        return tree

    def _rebuild_tree(self, sha256: str, manifest: bytes) -> None:
        staging = Path(tempfile.mkdtemp(dir=self._tmp()))
        try:
            for entry in json.loads(manifest)["files"]:
                relative = PurePosixPath(entry["path"])
                if relative.is_absolute() or ".." in relative.parts:
                    raise IntegrityError(f"artifact {sha256[:12]} names a file outside it")
                if not self._fetch(entry["sha256"], staging / "tree" / relative):
                    raise IntegrityError(
                        f"artifact {sha256[:12]}: its file {relative} is missing from the store"
                    )
            tree = self.tree_path(sha256)
            tree.parent.mkdir(parents=True, exist_ok=True)
            (staging / "tree").mkdir(exist_ok=True)
            if tree.exists():
                shutil.rmtree(tree)
            os.replace(staging / "tree", tree)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _verified_tree(self, sha256: str, manifest: bytes) -> Path:
        tree = self.tree_path(sha256)
        expected = json.loads(manifest)["files"]
        if not tree.is_dir():
            raise IntegrityError(f"artifact {sha256[:12]} is missing its folder {tree}")
        try:
            actual_manifest, _ = _manifest(tree)
        except NotPlainFolder as exc:
            raise IntegrityError(
                f"artifact {sha256[:12]} is corrupt: {exc}; re-register the model from its source"
            ) from None
        if actual_manifest != manifest:
            actual = {e["path"]: e["sha256"] for e in json.loads(actual_manifest)["files"]}
            wanted = {e["path"]: e["sha256"] for e in expected}
            bad = sorted(p for p in set(actual) | set(wanted) if actual.get(p) != wanted.get(p))
            raise IntegrityError(
                f"artifact {sha256[:12]} is corrupt: {', '.join(bad[:3])} "
                "changed, appeared or vanished "
                f"in {tree}; re-register the model from its source"
            )
        return tree
