"""The in-memory snapshot driver that tests of other layers use, and the values drivers return."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.core.retention import RetentionPolicy
from mlops.errors import (
    BadReference,
    RestoreFailed,
    SnapshotCorrupt,
    SnapshotDeleteFailed,
    SnapshotMissing,
)
from mlops.snapshots import Changes, SnapshotDriver, driver_for
from mlops.snapshots.fake import MemorySnapshot

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_the_fake_restores_counts_and_records_what_it_was_asked() -> None:
    fake = MemorySnapshot(now=lambda: NOW)
    assert isinstance(fake, SnapshotDriver)
    fake.resources["db"] = {"a": "1", "b": "2"}
    snap = fake.snapshot("db", Path("/snaps"), resource="features")
    assert snap.created_at == NOW
    assert snap.with_policy(
        RetentionPolicy(max_age=timedelta(days=7))
    ).expires_at == NOW + timedelta(days=7)
    fake.resources["db"] = {"a": "9", "c": "3"}
    assert fake.changes_since(snap, "db") == Changes("keys", added=1, removed=1, modified=1)
    result = fake.restore(snap, "db")
    assert result.writes_discarded == 3
    assert fake.resources["db"] == {"a": "1", "b": "2"}
    assert fake.checksum("db") == snap.checksum
    assert [c[0] for c in fake.calls] == ["snapshot", "changes_since", "restore", "checksum"]


def test_the_fake_fails_when_told_and_refuses_corrupt_or_deleted_snapshots() -> None:
    fake = MemorySnapshot()
    fake.resources["db"] = {"a": "1"}
    snap = fake.snapshot("db", Path("/snaps"), resource="features")
    fake.resources["db"] = {"a": "2"}
    fake.fail_next["restore"] = RestoreFailed("disk full")
    with pytest.raises(RestoreFailed, match="disk full"):
        fake.restore(snap, "db")
    fake.corrupt(snap)
    with pytest.raises(SnapshotCorrupt):
        fake.restore(snap, "db")
    fake.delete(snap)
    with pytest.raises(SnapshotMissing):
        fake.restore(snap, "db")
    assert fake.resources["db"] == {"a": "2"}


def test_a_delete_the_fake_is_told_to_fail_keeps_the_copy() -> None:
    fake = MemorySnapshot()
    fake.resources["db"] = {"a": "1"}
    snap = fake.snapshot("db", Path("/snaps"), resource="features")
    fake.fail_next["delete"] = SnapshotDeleteFailed(f"cannot delete {snap.location}")
    with pytest.raises(SnapshotDeleteFailed):
        fake.delete(snap)
    assert fake.restore(snap, "db").verified
    fake.delete(snap)
    fake.delete(snap)
    assert snap.location not in fake.copies


def test_changes_describe_themselves_for_the_rollback_event() -> None:
    assert Changes("rows").describe() == "no changes"
    changes = Changes("rows", added=3, modified=2, tables_added=1)
    assert changes.total == 6
    assert changes.describe() == "3 rows added, 2 rows modified, 1 table added"
    assert changes.to_dict()["total"] == 6


def test_drivers_are_found_by_the_name_a_data_resource_records() -> None:
    assert driver_for("sqlite").name == "sqlite"
    assert driver_for("postgresql", schema="features").name == "postgresql"
    assert driver_for("directory").name == "directory"
    with pytest.raises(BadReference, match="unknown data resource driver 'mysql'"):
        driver_for("mysql")
