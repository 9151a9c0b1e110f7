"""Deleting a snapshot's files: a folder that stays raises `SnapshotDeleteFailed`, one
already gone does not; clean-ups of half-written folders log what they leave behind."""

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlops.errors import SnapshotDeleteFailed
from mlops.snapshots import DirectorySnapshot, PostgresSnapshot, Snapshot, SqliteSnapshot
from mlops.snapshots.driver import SnapshotDriver, discard_folder

DRIVERS = [SqliteSnapshot(), PostgresSnapshot(), DirectorySnapshot()]


def snapshot_in(folder: Path, driver: SnapshotDriver) -> Snapshot:
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "rows").write_text("1\n")
    (folder / "snapshot.json").write_text("{}")
    return Snapshot(
        resource="features",
        driver=driver.name,
        location=str(folder),
        checksum="0" * 64,
        size_bytes=2,
        created_at=datetime(2026, 12, 3, tzinfo=UTC),
    )


@pytest.mark.parametrize("driver", DRIVERS, ids=lambda d: d.name)
def test_delete_removes_the_folder_and_a_missing_one_is_already_gone(
    tmp_path: Path, driver: SnapshotDriver
) -> None:
    snap = snapshot_in(tmp_path / "snap", driver)
    driver.delete(snap)
    assert not (tmp_path / "snap").exists()
    driver.delete(snap)


@pytest.mark.parametrize("driver", DRIVERS, ids=lambda d: d.name)
def test_a_file_that_cannot_be_removed_fails_the_delete_with_its_path_and_cause(
    tmp_path: Path, driver: SnapshotDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = snapshot_in(tmp_path / "snap", driver)
    unlink = os.unlink

    def refuse(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).endswith("rows"):
            raise PermissionError(1, "Operation not permitted", str(path))
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(SnapshotDeleteFailed) as failed:
        driver.delete(snap)
    assert str(tmp_path / "snap") in failed.value.message
    assert "Operation not permitted" in failed.value.message
    assert (tmp_path / "snap" / "files" / "rows").exists()


def test_rmtree_raising_is_a_failed_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = snapshot_in(tmp_path / "snap", DirectorySnapshot())

    def broken(path: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(shutil, "rmtree", broken)
    with pytest.raises(SnapshotDeleteFailed, match="Input/output error"):
        DirectorySnapshot().delete(snap)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A file that even root cannot remove (`chattr +i`), made removable again after."""
    target = tmp_path / "snap" / "files" / "rows"
    snapshot_in(tmp_path / "snap", DirectorySnapshot())
    if shutil.which("chattr") is None:
        pytest.skip("no chattr")
    made = subprocess.run(["chattr", "+i", str(target)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not allowed here: {made.stderr.decode().strip()}")
    try:
        yield target
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=True)


def test_an_immutable_file_fails_the_delete_and_stays(immutable: Path) -> None:
    folder = immutable.parent.parent
    driver = DirectorySnapshot()
    snap = Snapshot("features", driver.name, str(folder), "0" * 64, 2, datetime.now(UTC))
    with pytest.raises(SnapshotDeleteFailed, match="Operation not permitted"):
        driver.delete(snap)
    assert immutable.exists()


def test_discarding_a_half_written_folder_logs_what_it_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "half"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "left").write_text("x")
    (folder / "gone").write_text("x")
    unlink = os.unlink

    def refuse(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).endswith("left"):
            raise PermissionError(1, "Operation not permitted", str(path))
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuse)
    with caplog.at_level(logging.WARNING, logger="mlops.snapshots"):
        discard_folder(folder)
    assert not (folder / "gone").exists()
    assert (folder / "sub" / "left").exists()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "Operation not permitted" in record.getMessage()
    assert str(folder) in record.getMessage()


def test_discarding_a_missing_folder_is_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mlops.snapshots"):
        discard_folder(tmp_path / "never")
    assert caplog.records == []
