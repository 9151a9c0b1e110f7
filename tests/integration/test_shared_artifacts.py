"""Hosts that share a PostgreSQL store share its artifacts: a version registered on one host
loads on another with nothing copied by hand, each host's folder is a cache checked by SHA-256
on every load, and a corrupt copy, here or in the store, is never loaded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select, update

from mlops import Client, IntegrityError
from mlops.registry.artifacts import ArtifactStore
from mlops.store import Store
from mlops.store import schema as t
from mlops.store.artifacts import CHUNK_BYTES, StoreBlobs
from tests.conftest import pg_schema_url
from tests.models import training_data
from tests.server import running_server


@pytest.fixture
def store_url(pg_database: str) -> str:
    return pg_schema_url(pg_database)


def _blob(home: Path, sha: str) -> Path:
    return home / "artifacts" / "blobs" / sha[:2] / sha


def test_a_version_registered_on_one_host_loads_on_another(
    store_url: str, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    x = training_data()[0][:5]
    a, b = tmp_path / "host-a", tmp_path / "host-b"
    with Client(store_url, home=a) as on_a, Client(store_url, home=b) as on_b:
        file_version = on_a.register("lr", model_files["joblib"], trust=True)
        folder_version = on_a.register("flow", model_files["mlflow"], trust=True)
        assert not (b / "artifacts" / "blobs").exists()
        for ref in ("lr:1", "flow:1"):
            assert np.array_equal(on_b.load(ref).predict(x), on_a.load(ref).predict(x))
        sha = file_version.artifact_sha256
        assert _blob(b, sha).read_bytes() == model_files["joblib"].read_bytes()
        # The cache is checked on every load: a corrupt copy here is fetched again.
        _blob(b, sha).write_bytes(b"tampered")
        assert np.array_equal(on_b.load("lr:1").predict(x), on_a.load("lr:1").predict(x))
        assert hashlib.sha256(_blob(b, sha).read_bytes()).hexdigest() == sha
        tree = b / "artifacts" / "trees" / folder_version.artifact_sha256
        (tree / "MLmodel").write_text("flavors: {}\n")
        (tree / "extra.pkl").write_bytes(b"added")
        assert np.array_equal(on_b.load("flow:1").predict(x), on_a.load("flow:1").predict(x))
        assert not (tree / "extra.pkl").exists()
        # The same bytes registered again are stored once.
        with on_a._service.store.read() as tx:
            blobs = tx.conn.execute(select(func.count()).select_from(t.artifact_blobs)).scalar()
        on_a.register("lr-again", model_files["joblib"], trust=True)
        with on_a._service.store.read() as tx:
            again = tx.conn.execute(select(func.count()).select_from(t.artifact_blobs)).scalar()
        assert again == blobs


def test_a_gateway_on_another_host_serves_what_one_host_registered(
    store_url: str, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    with Client(store_url, home=tmp_path / "registry-host") as client:
        client.register("lr", model_files["joblib"], trust=True)
        client.deploy("api", model="lr:1")
        expected = client.load("lr:1").predict(training_data()[0][:3]).tolist()
    with running_server(store_url, tmp_path / "gateway-host") as server:
        answer = httpx.post(
            f"{server.url}/v1/models/api:predict",
            json={"instances": training_data()[0][:3].tolist()},
            timeout=30,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected


def test_blobs_go_in_chunks_and_a_corrupt_chunk_is_never_loaded(
    store_url: str, tmp_path: Path
) -> None:
    store = Store(store_url)
    try:
        data = os.urandom(2 * CHUNK_BYTES + 12345)
        stored = ArtifactStore(tmp_path / "a", StoreBlobs(store)).put_bytes(data)
        with store.read() as tx:
            chunks = tx.blob_chunks(stored.sha256)
        assert chunks is not None
        assert len(chunks) == 3
        assert ArtifactStore(tmp_path / "b", StoreBlobs(store)).read_file(stored.sha256) == data
        with store.write() as tx:
            tx.conn.execute(
                update(t.artifact_chunks)
                .where(t.artifact_chunks.c.sha256 == chunks[1])
                .values(data=b"x" * 10)
            )
        fresh = ArtifactStore(tmp_path / "c", StoreBlobs(store))
        with pytest.raises(IntegrityError, match="corrupt in the store"):
            fresh.read_file(stored.sha256)
        assert not _blob(tmp_path / "c", stored.sha256).parent.exists() or not any(
            _blob(tmp_path / "c", stored.sha256).parent.iterdir()
        )
        with pytest.raises(IntegrityError, match="missing"):
            fresh.read_file("0" * 64)
    finally:
        store.dispose()
