"""Data resources: snapshots before a release's migration, restores on rollback, by policy."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mlops import Client
from mlops.snapshots import driver_for
from tests.server import Cli, running_server, server_env, wait_for
from tests.snapshot import store_content

MIGRATE = """
UPDATE features SET amount = amount * 2;
ALTER TABLE features ADD COLUMN risk REAL DEFAULT 0.5;
"""
BROKEN = """
UPDATE features SET amount = amount * 2;
ALTER TABLE no_such_table ADD COLUMN risk REAL;
"""


def make_features(path: Path, rows: int = 200) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE features (customer INTEGER PRIMARY KEY, amount REAL)")
        conn.executemany("INSERT INTO features VALUES (?, ?)", [(i, i * 1.5) for i in range(rows)])
    assert sqlite3.connect(path).execute("SELECT count(*) FROM features").fetchone() == (rows,)


def rows_of(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM features ORDER BY customer").fetchall()


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> Cli:
    store = f"sqlite:///{tmp_path / 'store' / 'mlops.db'}"
    return Cli({**server_env(store, home), "COLUMNS": "200"})


@pytest.fixture
def served(cli: Cli, model_files: dict[str, Path], tmp_path: Path) -> Path:
    features = tmp_path / "features.db"
    make_features(features)
    for key in ("joblib", "joblib2", "fails_live"):
        cli("register", "m", str(model_files[key]), "--trust")
    cli("deploy", "api", "--model", "m:1")
    cli("data", "add", "api", "features", "--sqlite", str(features))
    return features


def test_a_migration_is_snapshotted_and_a_rollback_restores_the_data(
    cli: Cli, served: Path, tmp_path: Path
) -> None:
    before = rows_of(served)
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    cli("deploy", "api", "--model", "m:2", "--migration", str(sql))
    assert rows_of(served)[1] == (1, 3.0, 0.5)  # migrated: doubled, a new column
    snaps: Any = cli.json("snapshots", "api")
    assert [(s["resource"], s["revision"], s["status"]) for s in snaps] == [
        ("features", 2, "ready")
    ]
    make_features(tmp_path / "orig.db")  # the same data as before the migration
    assert snaps[0]["checksum"] == driver_for("sqlite").checksum(str(tmp_path / "orig.db"))
    with sqlite3.connect(served) as conn:  # a write after the release: the restore undoes it
        conn.execute("INSERT INTO features VALUES (999, 1.0, 0.1)")

    done = cli("rollback", "api", "--reason", "bad features")
    assert "data features: restored from snapshot" in done.stdout
    assert "checksum verified" in done.stdout
    assert rows_of(served) == before
    event = cli.json("history", "api")[0]["event"]  # type: ignore[index]
    restored = event["details"]["data_features"]
    assert restored["status"] == "restored"
    assert restored["checksum"] == snaps[0]["checksum"]
    assert restored["writes_discarded"] >= 2  # the migrated rows and the later insert
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
    assert rows_of(served) == before


def test_a_migration_that_fails_half_way_changes_nothing(
    cli: Cli, served: Path, tmp_path: Path, home: Path
) -> None:
    before = rows_of(served)
    store = cli.env["MLOPS_STORE"]
    content = store_content(store, home)
    sql = tmp_path / "broken.sql"
    sql.write_text(BROKEN)
    failed = cli("deploy", "api", "--model", "m:2", "--migration", str(sql), code=5)
    assert "the migration" in failed.stderr
    assert "no such table" in failed.stderr
    assert rows_of(served) == before
    assert store_content(store, home) == content
    assert cli.json("status", "api")["revision"] == 1  # type: ignore[index]
    assert not list((home / "snapshots").rglob("snapshot.json"))  # its snapshot is gone too


def test_a_python_migration_that_fails_after_writing_is_put_back(
    cli: Cli, served: Path, tmp_path: Path
) -> None:
    before = rows_of(served)
    module = tmp_path / "half_migration.py"
    module.write_text(
        "import sqlite3\n"
        "def run(resources):\n"
        "    with sqlite3.connect(resources['features']) as conn:\n"
        "        conn.execute('DELETE FROM features WHERE customer < 100')\n"
        "    raise RuntimeError('lost the network half way')\n"
    )
    cli.env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), cli.env.get("PYTHONPATH", "")])
    failed = cli("deploy", "api", "--model", "m:2", "--migration", "half_migration:run", code=5)
    assert "lost the network half way" in failed.stderr
    assert rows_of(served) == before  # the deletions were undone from the snapshot


def test_bad_data_input_is_refused_and_changes_nothing(
    cli: Cli, served: Path, tmp_path: Path, home: Path
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
    cli("data", "add", "api", "other", "--sqlite", str(served), "--policy", "maybe", code=5)
    assert store_content(store, home) == content


def test_policy_freeze_refuses_the_rollback_and_keep_leaves_the_data(
    cli: Cli, served: Path, tmp_path: Path, home: Path
) -> None:
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    cli("data", "add", "api", "features", "--sqlite", str(served), "--policy", "freeze")
    cli("deploy", "api", "--model", "m:2", "--migration", str(sql))
    migrated = rows_of(served)
    store = cli.env["MLOPS_STORE"]
    content = store_content(store, home)
    refused = cli("rollback", "api", code=4)
    assert "policy freeze" in refused.stderr
    assert store_content(store, home) == content
    assert rows_of(served) == migrated
    cli("data", "add", "api", "features", "--sqlite", str(served), "--policy", "keep")
    cli("rollback", "api")
    assert rows_of(served) == migrated
    event = cli.json("history", "api")[0]["event"]  # type: ignore[index]
    assert event["details"]["data"][0]["status"] == "kept"


def test_an_automatic_rollback_restores_the_data_while_stable_serves(
    served: Path, tmp_path: Path, home: Path, cli: Cli
) -> None:
    before = rows_of(served)
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    store = cli.env["MLOPS_STORE"]
    with Client(store, home=home) as client, running_server(store, home) as server:
        spec = {"steps": [{"set_weight": 50}, {"pause": {"duration": "1m"}}]}
        client.deploy("api", model="m:3", rollout=spec, migration=str(sql))
        assert rows_of(served)[1] == (1, 3.0, 0.5)
        with server.client() as http:

            def rolled_back() -> bool:
                http.post("/v1/models/api:predict", json={"instances": [[0.5] * 6]})
                return client.status("api")[0].rollout is None

            wait_for(rolled_back, timeout=60)
        wait_for(lambda: client.snapshots("api")[0].status == "restored", timeout=30)
        assert rows_of(served) == before
        rollback = next(e for e in client.events("api") if e.action == "rollback")
        assert rollback.trigger == "analysis"
        assert rollback.details["data_features"]["status"] == "restored"
        assert json.dumps(rollback.details)  # the event stays JSON


def test_retention_expires_old_snapshots_and_a_missing_one_refuses_the_rollback(
    cli: Cli, served: Path, tmp_path: Path, home: Path
) -> None:
    cli("data", "add", "api", "features", "--sqlite", str(served), "--keep-last", "1")
    for number in (2, 1, 2):
        sql = tmp_path / f"step-{number}.sql"
        sql.write_text(f"UPDATE features SET amount = amount + {number};")
        cli("deploy", "api", "--model", f"m:{number}", "--migration", str(sql))
    snaps: Any = cli.json("snapshots", "api")
    assert [s["status"] for s in snaps] == ["ready", "expired", "expired"]
    assert not Path(snaps[1]["location"]).exists()  # its files are gone
    store = cli.env["MLOPS_STORE"]
    content = store_content(store, home)
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
