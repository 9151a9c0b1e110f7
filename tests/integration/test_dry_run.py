"""Dry runs of deploys and rollbacks: each answers what the real operation then does, and
leaves the store and the data exactly as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.data_resources import MIGRATE, Features
from tests.server import Cli
from tests.snapshot import store_content

SAME = ("deployment", "action", "changed", "revision", "from", "source_revision", "components")


def _store(cli: Cli, home: Path) -> dict[str, Any]:
    return store_content(cli.env["MLOPS_STORE"], home)


def _matches(dry: dict[str, Any], real: dict[str, Any]) -> None:
    assert dry["dry_run"] is True
    assert "dry_run" not in real
    assert {k: dry[k] for k in SAME} == {k: real[k] for k in SAME}
    assert dry["changes"] == real["changes"]
    assert dry["event_id"] is None


def _dry_then_real(cli: Cli, home: Path, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    before = _store(cli, home)
    dry: Any = cli.json(*args, "--dry-run")
    assert _store(cli, home) == before, "a dry run changed the store"
    real: Any = cli.json(*args)
    _matches(dry, real)
    return dry, real


def test_a_migrating_deploy_and_each_form_of_rollback_as_their_dry_runs_said(
    cli: Cli, home: Path, model_files: dict[str, Path], features: Features, tmp_path: Path
) -> None:
    for key in ("joblib", "joblib2", "regression"):
        cli("register", "m", str(model_files[key]), "--trust")
    cli("deploy", "api", "--model", "m:1")
    cli("data", "add", "api", "features", *features.add_args())
    sql = tmp_path / "migrate.sql"
    sql.write_text(MIGRATE)
    rows = features.rows()

    dry, _ = _dry_then_real(cli, home, "deploy", "api", "--model", "m:2", "--migration", str(sql))
    assert dry["data"] == [
        {
            "resource": "features",
            "driver": features.kind,
            "policy": "restore",
            "status": "would snapshot",
        }
    ]
    assert features.rows() != rows  # the real deploy migrated
    features.execute("INSERT INTO features VALUES (999, 1.0, 0.1)")
    migrated = features.rows()

    before = _store(cli, home)
    dry = cli.json("rollback", "api", "--dry-run")
    assert _store(cli, home) == before
    assert features.rows() == migrated  # the data too is untouched by a dry run
    [planned] = dry["data"]  # type: ignore[index]
    assert planned["status"] == "would restore"
    assert planned["discards"]["total"] >= 201  # 199 rows doubled, 1 inserted, 1 column
    real: Any = cli.json("rollback", "api")
    _matches(dry, real)  # type: ignore[arg-type]
    assert features.rows() == rows
    assert real["data"][0]["snapshot"] == planned["snapshot"]
    assert real["data"][0]["writes_discarded"] == planned["discards"]["total"]

    _dry_then_real(cli, home, "rollback", "api", "--version", "2")
    _dry_then_real(cli, home, "deploy", "api", "--model", "m:3")
    _dry_then_real(cli, home, "rollback", "api", "--component", "model", "--version", "1")
    _dry_then_real(cli, home, "rollback", "api", "--revision", "1")
    unchanged, _ = _dry_then_real(cli, home, "rollback", "api", "--revision", "1")
    assert unchanged["changed"] is False


def test_a_dry_run_is_refused_as_the_real_operation_would_be(
    cli: Cli, home: Path, model_files: dict[str, Path], features: Features
) -> None:
    cli("register", "m", str(model_files["joblib"]), "--trust")
    cli("deploy", "api", "--model", "m:1")
    before = _store(cli, home)
    refused = cli("rollback", "api", "--dry-run", code=3)
    assert "no earlier release to roll back to" in refused.stderr
    assert "m:9" in cli("deploy", "api", "--model", "m:9", "--dry-run", code=3).stderr
    missing = cli("deploy", "api", "--model", "m:1", "--migration", "x.sql", "--dry-run", code=5)
    assert "declares none" in missing.stderr
    assert _store(cli, home) == before
