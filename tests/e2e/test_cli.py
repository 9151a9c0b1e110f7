"""The `mlops` command as a user runs it: real processes, real files, exit codes and JSON."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import MLOPS, Cli, running_server


def local_env(store_url: str, home: Path) -> dict[str, str]:
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_STORE": store_url, "COLUMNS": "200"}
    for name in ("MLOPS_TRUST", "MLOPS_URL", "MLOPS_TOKEN"):
        env.pop(name, None)
    return env


@pytest.fixture(params=["local", "remote"])
def cli(request: pytest.FixtureRequest, store_url: str, home: Path) -> Iterator[Cli]:
    """The CLI on the store itself, or (remote) on a server's API with an admin token: the
    same commands must print the same and exit the same."""
    local = Cli(local_env(store_url, home))
    if request.param == "local":
        yield local
        return
    created = local.json("token", "create", "ops", "--role", "admin")
    assert isinstance(created, dict)
    with running_server(store_url, home, "--no-gateway") as server:
        env = {**os.environ, "MLOPS_URL": server.url, "MLOPS_TOKEN": str(created["secret"])}
        env.update(COLUMNS="200", MLOPS_CREDENTIALS=str(home / "no-credentials.json"))
        for name in ("MLOPS_TRUST", "MLOPS_HOME", "MLOPS_STORE"):
            env.pop(name, None)
        yield Cli(env)


def test_register_deploy_and_rollback_by_version(cli: Cli, model_files: dict[str, Path]) -> None:
    out = cli(
        "register", "fraud", str(model_files["joblib"]), "--trust", "--tag", "team=risk"
    ).stdout
    assert "Registered fraud:1 (sklearn; 6 features [float64] -> classification" in out
    cli("register", "fraud", str(model_files["skops"]))
    cli("register", "fraud", str(model_files["onnx"]))
    for v in (1, 2, 3):
        cli("deploy", "fraud-api", "--model", f"fraud:{v}")
    cli("deploy", "fraud-api", "--model", "fraud:1")
    out = cli("rollback", "--version", "3", "--reason", "v1 drifted [see #12]").stdout
    assert "Rolled back fraud-api to revision 5, restoring revision 3" in out
    assert "v1 drifted [see #12]" in cli("history", "fraud-api").stdout

    status = cli.json("status", "fraud-api")
    assert isinstance(status, dict)
    assert status["deployment"] == "fraud-api"
    assert status["revision"] == 5
    assert status["components"] == {"model": {"model": "fraud", "version": 3}}

    history = cli.json("history", "fraud-api")
    assert isinstance(history, list)
    assert [h["revision"] for h in history] == [5, 4, 3, 2, 1]
    event = history[0]["event"]
    assert {k: event[k] for k in ("action", "trigger", "reason", "from", "to")} == {
        "action": "rollback",
        "trigger": "manual",
        "reason": "v1 drifted [see #12]",
        "from": 4,
        "to": 5,
    }
    assert event["actor"]
    assert event["at"]

    models = cli.json("models")
    assert models == [
        {
            "model": "fraud",
            "latest_version": 3,
            "versions": 3,
            "quarantined": 0,
            "created_at": models[0]["created_at"],
        }  # type: ignore[index]
    ]
    versions = cli.json("models", "fraud")
    assert [v["version"] for v in versions] == [3, 2, 1]  # type: ignore[union-attr]
    assert versions[2]["tags"] == {"team": "risk"}  # type: ignore[index]
    table = cli("history").stdout
    assert "rollback to 3" in table
    assert "v1 drifted" in table


def test_quarantine_then_force(cli: Cli, model_files: dict[str, Path]) -> None:
    cli("register", "m", str(model_files["skops"]))
    cli("register", "m", str(model_files["onnx"]))
    cli("deploy", "api", "--model", "m:1")
    cli("deploy", "api", "--model", "m:2")
    cli("quarantine", "m:1", "--reason", "bad calibration")
    err = cli("rollback", "api", code=4).stderr
    assert (
        err.strip() == "error: m:1 is quarantined (bad calibration); pass --force to use it anyway"
    )
    cli("rollback", "api", "--force")
    assert cli.json("status", "api")["quarantined"] == ["m:1"]  # type: ignore[index]
    cli("quarantine", "m:1", "--lift")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["rollback", "ghost"], 3, "deployment 'ghost' does not exist"),
        (["deploy", "api", "--model", "m"], 5, "expected MODEL:VERSION"),
        (["deploy", "api", "--model", "m:7"], 3, "version m:7 is not registered"),
        (["rollback", "api", "--revision", "9"], 3, "release 9 does not exist"),
        (["rollback", "api", "--version", "2", "--revision", "1"], 5, "exclude each other"),
        (["register", "m", "/no/such/file.onnx"], 5, "does not exist"),
        (["quarantine", "m:1"], 5, "needs a reason"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    cli: Cli, model_files: dict[str, Path], args: list[str], code: int, message: str
) -> None:
    cli("register", "m", str(model_files["skops"]))
    cli("deploy", "api", "--model", "m:1")
    before = cli("history", "api", "-o", "json").stdout
    err = cli(*args, code=code).stderr
    assert err.startswith("error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert cli("history", "api", "-o", "json").stdout == before


def test_untrusted_pickle_and_wrong_flavor(cli: Cli, model_files: dict[str, Path]) -> None:
    err = cli("register", "m", str(model_files["joblib"]), code=5).stderr
    assert "runs code from the file" in err
    assert "--trust" in err
    err = cli("register", "m", str(model_files["text"]), code=5).stderr
    assert "not a model file" in err
    err = cli("register", "m", str(model_files["onnx"]), "--flavor", "skops", code=5).stderr
    assert "is a onnx artifact, not skops" in err
    assert cli.json("models") == []


def test_usage_errors_exit_2(cli: Cli) -> None:
    cli("rollback", "--version", "zero", code=2)
    cli("frobnicate", code=2)


def test_unreachable_store_exits_6(cli: Cli) -> None:
    remote = "MLOPS_URL" in cli.env
    if remote:
        cli.env["MLOPS_URL"] = "http://127.0.0.1:1"
    else:
        cli.env["MLOPS_STORE"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    err = cli("status", code=6).stderr
    assert ("cannot reach http://127.0.0.1:1" if remote else "cannot reach the store") in err


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [MLOPS, "demo", "--home", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Rolled back automatically (analysis)" in done.stdout
    assert "quarantined: fraud:2" in done.stdout
    assert "Promoted" in done.stdout
    assert "mlops rollback --version 1" in done.stdout
    assert "restores revision 1" in done.stdout


def test_output_piped_into_a_reader_that_stops_early_is_no_error(
    cli: Cli, model_files: dict[str, Path]
) -> None:
    for _ in range(40):
        cli("register", "fraud", str(model_files["skops"]))
    env = cli.env
    pipeline = subprocess.run(
        f"'{MLOPS}' models fraud -o json | head -c 10; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert pipeline.stdout == "[\n  {\n    "
    assert "internal error" not in pipeline.stderr
    assert pipeline.returncode in (0, 141)
