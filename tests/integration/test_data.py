"""Data resources: snapshots before a release's migration, restores on rollback, by policy.

Each behaviour is shown on an SQLite file and on a real PostgreSQL schema (made for the test
with a random name and dropped after it; see tests/data_resources.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mlops import Client
from tests.data_resources import (
    BROKEN,
    MIGRATE,
    Features,
)
from tests.server import Cli, running_server, wait_for
from tests.snapshot import store_content

SQLITE_ONLY = pytest.mark.parametrize("features", ["sqlite"], indirect=True)


@pytest.fixture
def served(cli: Cli, model_files: dict[str, Path], features: Features) -> Features:
    for key in ("joblib", "joblib2", "fails_live"):
        cli("register", "m", str(model_files[key]), "--trust")
    cli("deploy", "api", "--model", "m:1")
    cli("data", "add", "api", "features", *features.add_args())
    return features


def test_a_migration_is_snapshotted_and_a_rollback_restores_the_data(
    cli: Cli, served: Features, tmp_path: Path
) -> None:
    before = served.rows()
    checksum = served.checksum()
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    cli("deploy", "api", "--model", "m:2", "--migration", str(sql))
    assert served.rows()[1] == (1, 3.0, 0.5)  # migrated: doubled, a new column
    snaps: Any = cli.json("snapshots", "api")
    assert [(s["resource"], s["revision"], s["status"]) for s in snaps] == [
        ("features", 2, "ready")
    ]
    assert snaps[0]["driver"] == served.kind
    assert snaps[0]["checksum"] == checksum  # the data as it was before the migration
    served.execute("INSERT INTO features VALUES (999, 1.0, 0.1)")  # a write after the release

    done = cli("rollback", "api", "--reason", "bad features")
    assert "data features: restored from snapshot" in done.stdout
    assert "checksum verified" in done.stdout
    assert served.rows() == before  # the restore undid the migration and the later insert
    assert served.checksum() == checksum
    event = cli.json("history", "api")[0]["event"]  # type: ignore[index]
    restored = event["details"]["data_features"]
    assert restored["status"] == "restored"
    assert restored["checksum"] == snaps[0]["checksum"]
    # The writes between the snapshot and the rollback are counted: 199 rows the migration
    # doubled (0 * 2 is 0), the row inserted afterwards, and the table's new column.
    assert restored["writes_discarded"] >= 201
    assert "199 rows modified" in restored["changes"]
    assert "added" in restored["changes"]
    assert event["details"]["data"] == [
        {
            "resource": "features",
            "policy": "restore",
            "snapshot": snaps[0]["id"],
            "status": "restoring",
        }
    ]
    assert cli.json("snapshots", "api")[0]["status"] == "restored"  # type: ignore[index]
    # Going forward again does not re-run the migration: the data stays as restored.
    cli("rollback", "api")
    assert served.rows() == before


def test_a_migration_that_fails_half_way_changes_nothing(
    cli: Cli, served: Features, tmp_path: Path, home: Path
) -> None:
    before = served.rows()
    store = cli.env["MLOPS_STORE"]
    content = store_content(store, home)
    sql = tmp_path / "broken.sql"
    sql.write_text(BROKEN)
    failed = cli("deploy", "api", "--model", "m:2", "--migration", str(sql), code=5)
    assert "the migration" in failed.stderr
    assert served.no_such_table in failed.stderr
    assert served.rows() == before
    assert store_content(store, home) == content
    assert cli.json("status", "api")["revision"] == 1  # type: ignore[index]
    assert not list((home / "snapshots").rglob("snapshot.json"))  # its snapshot is gone too


def test_a_python_migration_that_fails_after_writing_is_put_back(
    cli: Cli, served: Features, home: Path
) -> None:
    before = served.rows()
    store = cli.env["MLOPS_STORE"]
    content = store_content(store, home)
    failed = cli("deploy", "api", "--model", "m:2", "--migration", "migrations:half_way", code=5)
    assert "lost the network half way" in failed.stderr
    assert served.rows() == before  # the deletions were undone from the snapshot
    assert store_content(store, home) == content  # its pending snapshot row is gone too
    assert cli.json("status", "api")["revision"] == 1  # type: ignore[index]


@SQLITE_ONLY
def test_bad_data_input_is_refused_and_changes_nothing(
    cli: Cli, served: Features, tmp_path: Path, home: Path
) -> None:
    store = cli.env["MLOPS_STORE"]
    content = store_content(store, home)
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    unknown = cli(
        "deploy", "api", "--model", "m:2", "--migration", str(sql), "--data", "nope", code=3
    )
    assert "no data resource 'nope' (features)" in unknown.stderr
    missing = cli("deploy", "api", "--model", "m:2", "--migration", str(tmp_path / "x.sql"), code=5)
    assert "cannot read the migration" in missing.stderr
    cli("data", "add", "api", "other", "--sqlite", str(tmp_path / "absent.db"), code=3)
    cli("data", "add", "api", "other", "--sqlite", served.location, "--policy", "maybe", code=5)
    assert store_content(store, home) == content


def test_policy_freeze_refuses_the_rollback_and_keep_leaves_the_data(
    cli: Cli, served: Features, tmp_path: Path, home: Path
) -> None:
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    cli("data", "add", "api", "features", *served.add_args(), "--policy", "freeze")
    cli("deploy", "api", "--model", "m:2", "--migration", str(sql))
    migrated = served.rows()
    store = cli.env["MLOPS_STORE"]
    content = store_content(store, home)
    refused = cli("rollback", "api", code=4)
    assert "policy freeze" in refused.stderr
    assert store_content(store, home) == content
    assert served.rows() == migrated
    assert cli.json("status", "api")["revision"] == 2  # type: ignore[index]
    cli("data", "add", "api", "features", *served.add_args(), "--policy", "keep")
    cli("rollback", "api")
    assert served.rows() == migrated
    event = cli.json("history", "api")[0]["event"]  # type: ignore[index]
    assert event["details"]["data"][0]["status"] == "kept"
    assert cli.json("snapshots", "api")[0]["status"] == "ready"  # type: ignore[index]


@SQLITE_ONLY
def test_an_automatic_rollback_restores_the_data_while_stable_serves(
    served: Features, tmp_path: Path, home: Path, cli: Cli
) -> None:
    before = served.rows()
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    store = cli.env["MLOPS_STORE"]
    with Client(store, home=home) as client, running_server(store, home) as server:
        spec = {"steps": [{"set_weight": 50}, {"pause": {"duration": "1m"}}]}
        client.deploy("api", model="m:3", rollout=spec, migration=str(sql))
        assert served.rows()[1] == (1, 3.0, 0.5)
        with server.client() as http:

            def rolled_back() -> bool:
                http.post("/v1/models/api:predict", json={"instances": [[0.5] * 6]})
                return client.status("api")[0].rollout is None

            wait_for(rolled_back, timeout=60)
        wait_for(lambda: client.snapshots("api")[0].status == "restored", timeout=30)
        assert served.rows() == before
        rollback = next(e for e in client.events("api") if e.action == "rollback")
        assert rollback.trigger == "analysis"
        restored = rollback.details["data_features"]
        assert restored["status"] == "restored"
        assert "rows modified" in restored["changes"]  # the migration's writes, undone once
        # the gateway's controller restored it in a child process, which claimed it
        claim = client.snapshots("api")[0].details["claim"]
        assert claim["pid"] not in (os.getpid(), server.process.pid)
        assert json.dumps(rollback.details)  # the event stays JSON

        # A rollback by hand while that controller runs: one of the two restores, once, and
        # the command reports what was undone either way.
        cli("deploy", "api", "--model", "m:2", "--migration", str(sql))
        out = cli("rollback", "api").stdout
        assert "writes since the snapshot undone" in out
        assert "rows modified" in out
        newest = client.snapshots("api")[0]
        assert newest.status == "restored"
        assert "rows modified" in newest.details["restore"]["changes"]
        assert served.rows() == before


def test_retention_expires_old_snapshots_and_a_missing_one_refuses_the_rollback(
    cli: Cli, served: Features, tmp_path: Path, home: Path
) -> None:
    cli("data", "add", "api", "features", *served.add_args(), "--keep-last", "1")
    for number in (2, 1, 2):
        sql = tmp_path / f"step-{number}.sql"
        sql.write_text(f"UPDATE features SET amount = amount + {number};")
        cli("deploy", "api", "--model", f"m:{number}", "--migration", str(sql))
    snaps: Any = cli.json("snapshots", "api")
    assert [s["status"] for s in snaps] == ["ready", "expired", "expired"]
    assert not Path(snaps[1]["location"]).exists()  # its files are gone
    store = cli.env["MLOPS_STORE"]
    content = store_content(store, home)
    migrated = served.rows()
    refused = cli("rollback", "api", "--revision", "1", code=3)
    assert "deleted by its retention policy" in refused.stderr
    assert store_content(store, home) == content
    # The newest snapshot is kept; deleting its files by hand is refused the same way.
    for item in Path(snaps[0]["location"]).iterdir():
        item.unlink()
    content = store_content(store, home)
    missing = cli("rollback", "api", code=3)
    assert "is missing from" in missing.stderr
    assert store_content(store, home) == content
    assert served.rows() == migrated  # nothing was changed
    assert cli.json("status", "api")["revision"] == 4  # type: ignore[index]
