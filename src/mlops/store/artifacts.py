"""Artifacts in the store, for hosts that share a PostgreSQL store: each blob kept as the
ordered SHA-256 of its chunks, each chunk kept once by its own SHA-256. Hosts keep a local
cache and check every blob's hash when they load it (`mlops.registry.artifacts`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy import select

from mlops.store import schema as t
from mlops.store.transaction import Transaction

if TYPE_CHECKING:
    from mlops.store.store import Store

CHUNK_BYTES = 1 << 20
"""The size of a chunk: what one statement carries, and what a reader holds at once."""


class ArtifactRepo(Transaction):
    def blob_chunks(self, sha256: str) -> list[str] | None:
        """The chunks of blob `sha256` in order, or None if the store does not hold it."""
        found = self.conn.execute(
            select(t.artifact_blobs.c.chunks).where(t.artifact_blobs.c.sha256 == sha256)
        ).scalar_one_or_none()
        return None if found is None else [str(c) for c in found]

    def chunk(self, sha256: str) -> bytes | None:
        found = self.conn.execute(
            select(t.artifact_chunks.c.data).where(t.artifact_chunks.c.sha256 == sha256)
        ).scalar_one_or_none()
        return None if found is None else bytes(found)

    def add_chunk(self, sha256: str, data: bytes) -> None:
        self.conn.execute(
            self.insert_new(t.artifact_chunks, ["sha256"]).values(sha256=sha256, data=data)
        )

    def add_blob(self, sha256: str, size_bytes: int, chunks: list[str]) -> None:
        self.conn.execute(
            self.insert_new(t.artifact_blobs, ["sha256"]).values(
                sha256=sha256, size_bytes=size_bytes, chunks=chunks
            )
        )


class StoreBlobs:
    """The store as the place every host finds an artifact's bytes (`SharedBlobs`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def has(self, sha256: str) -> bool:
        with self.store.read() as tx:
            return tx.blob_chunks(sha256) is not None

    def put(self, sha256: str, source: BinaryIO) -> None:
        """Store the bytes of `source` as blob `sha256`: its chunks first, each in a
        transaction of its own, then the blob, so that a blob the store names is whole."""
        chunks: list[str] = []
        size = 0
        while data := source.read(CHUNK_BYTES):
            digest = hashlib.sha256(data).hexdigest()
            with self.store.write() as tx:
                tx.add_chunk(digest, data)
            chunks.append(digest)
            size += len(data)
        with self.store.write() as tx:
            tx.add_blob(sha256, size, chunks)

    def fetch(self, sha256: str) -> Iterator[bytes] | None:
        """The chunks of blob `sha256` in order, read one at a time; None if the store does
        not hold it. The caller checks the whole blob's hash."""
        with self.store.read() as tx:
            chunks = tx.blob_chunks(sha256)
        if chunks is None:
            return None
        return self._chunks(chunks)

    def _chunks(self, chunks: list[str]) -> Iterator[bytes]:
        for digest in chunks:
            with self.store.read() as tx:
                data = tx.chunk(digest)
            yield b"" if data is None else data
