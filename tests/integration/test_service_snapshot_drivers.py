"""The service with its snapshot drivers passed in: restores and expiry run on the in-memory
driver (`MemorySnapshot`), with no database or folder behind the data."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.core.refs import ComponentRef
from mlops.errors import BadReference, SnapshotDeleteFailed
from mlops.service import DriverMap, Service
from mlops.service.migration import MigrationFailed
from mlops.settings import load_settings
from mlops.snapshots.fake import MemorySnapshot

FAKE = MemorySnapshot()
"""The driver the migrations below change data through (a migration is found by name)."""
KV = "kv-store"


def migrate(locations: dict[str, str]) -> None:
    FAKE.resources[locations["kv"]]["b"] = "2"


def migrate_then_fail(locations: dict[str, str]) -> None:
    FAKE.resources[locations["kv"]]["a"] = "changed"
    raise RuntimeError("the migration broke")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    FAKE.resources[KV] = {"a": "1"}
    FAKE.copies.clear()
    FAKE.calls.clear()
    FAKE.fail_next.clear()
    settings = load_settings(home=tmp_path / "home", store_url=f"sqlite:///{tmp_path}/s.db")
    svc = Service(settings, snapshot_drivers=DriverMap({"memory": FAKE}))
    svc.add_data("api", "kv", driver="memory", location=KV, keep_last=1)
    yield svc
    svc.close()


def test_a_failed_migration_is_restored_through_the_memory_driver(service: Service) -> None:
    with pytest.raises(MigrationFailed, match="the migration broke"):
        service.deploy("api", migration=f"{__name__}:migrate_then_fail", data=["kv"])
    assert FAKE.resources[KV] == {"a": "1"}  # put back from the snapshot
    operations = [call[0] for call in FAKE.calls]
    assert operations == ["checksum", "snapshot", "restore", "delete"]
    assert FAKE.copies == {}  # the snapshot was dropped
    assert service.snapshots("api") == []  # its pending row was forgotten


def test_an_unknown_driver_is_refused(service: Service) -> None:
    with pytest.raises(BadReference, match="unknown data resource driver 'sqlite'"):
        service.add_data("api", "other", driver="sqlite", location=__file__)


def _deploy_twice_with_migrations(service: Service, model_files: dict[str, Path]) -> None:
    for _ in range(3):
        service.register("m", model_files["joblib"], trust=True)
    service.deploy("api", model=ComponentRef("m", 1))
    for version in (2, 3):
        service.deploy("api", model=ComponentRef("m", version), migration=f"{__name__}:migrate")


def test_a_snapshot_whose_files_stay_is_not_marked_expired(
    service: Service, model_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    FAKE.fail_next["delete"] = SnapshotDeleteFailed("cannot remove /x: read-only file system")
    with caplog.at_level(logging.WARNING, logger="mlops.snapshots"):
        _deploy_twice_with_migrations(service, model_files)
    statuses = [(s.revision, s.status) for s in service.snapshots("api")]
    assert statuses == [(3, "ready"), (2, "ready")]  # keep_last=1, yet the older one stays
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert "read-only file system" in warned[0].getMessage()

    assert service.expire_snapshots("api") == [service.snapshots("api")[1].id]  # retried
    statuses = [(s.revision, s.status) for s in service.snapshots("api")]
    assert statuses == [(3, "ready"), (2, "expired")]


def test_a_rollback_restores_through_the_memory_driver(
    service: Service, model_files: dict[str, Path]
) -> None:
    _deploy_twice_with_migrations(service, model_files)
    FAKE.resources[KV]["c"] = "written after the release"
    snaps = service.snapshots("api")
    for snap in snaps:  # the presence check looks for a driver's snapshot.json
        Path(snap.location).mkdir(parents=True, exist_ok=True)
        (Path(snap.location) / "snapshot.json").write_text("{}")
    result = service.rollback("api")
    assert result.revision == 4
    restored: list[dict[str, Any]] = list(result.data or [])
    assert [(o["resource"], o["status"]) for o in restored] == [("kv", "restored")]
    assert FAKE.resources[KV] == {"a": "1", "b": "2"}  # as before release 3's migration
