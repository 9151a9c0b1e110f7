"""Start-up stays light: help, a usage error and remote commands import none of the store's,
the numeric or the model libraries (each measured in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops import Client
from tests.server import running_server

HEAVY = ("sqlalchemy", "psycopg", "alembic", "numpy", "scipy", "sklearn", "onnxruntime", "skops")
PROBE = """
import atexit, json, sys
heavy = {heavy!r}
def report():
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))
    sys.stderr.write("\\nLOADED " + json.dumps(loaded) + "\\n")
atexit.register(report)
sys.argv = ["mlops", *{args!r}]
from mlops.cli.app import main
main()
"""


def loaded_by(args: list[str], env: dict[str, str]) -> tuple[int, list[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, args=args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("LOADED ")][-1]
    return done.returncode, json.loads(line.removeprefix("LOADED ")), done.stdout


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env["MLOPS_CREDENTIALS"] = str(tmp_path / "none.json")
    return env


@pytest.mark.parametrize(
    ("args", "code"),
    [(["--help"], 0), (["deploy", "--help"], 0), (["rollback", "--bogus"], 2), ([], 2)],
)
def test_help_and_usage_errors_load_no_heavy_library(
    args: list[str], code: int, bare_env: dict[str, str]
) -> None:
    returned, loaded, _ = loaded_by(args, bare_env)
    assert returned == code
    assert loaded == []


def test_remote_commands_load_no_heavy_library(
    store_url: str, home: Path, model_files: dict[str, Path], bare_env: dict[str, str]
) -> None:
    with Client(store_url, home=home) as client:
        client.register("m", model_files["onnx"])
        client.deploy("api", model="m:1")
        secret = client._service.create_token("ops", role="operator").secret
    with running_server(store_url, home, "--no-gateway") as server:
        env = {**bare_env, "MLOPS_URL": server.url, "MLOPS_TOKEN": secret, "COLUMNS": "200"}
        for args in (["status"], ["status", "api", "-o", "json"], ["history", "api"]):
            code, loaded, out = loaded_by(args, env)
            assert code == 0, out
            assert loaded == [], args
        code, loaded, out = loaded_by(["status", "api", "-o", "json"], env)
        assert json.loads(out)["components"] == {"model": {"model": "m", "version": 1}}
        code, loaded, _ = loaded_by(["rollback", "api", "--dry-run"], env)
        assert (code, loaded) == (3, [])  # no earlier release: NotFound, as locally


def test_importing_mlops_for_the_client_is_light(bare_env: dict[str, str]) -> None:
    probe = (
        "import sys, mlops; from mlops import Client, NotFound; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=bare_env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_shell_completion_answers_without_heavy_libraries(bare_env: dict[str, str]) -> None:
    env = {**bare_env, "_MLOPS_COMPLETE": "complete_bash", "COMP_CWORD": "2"}
    _, loaded, out = loaded_by([], {**env, "COMP_WORDS": "mlops rollback --ve"})
    assert out.split() == ["--version"]
    assert loaded == []
    _, _, out = loaded_by([], {**env, "COMP_WORDS": "mlops st", "COMP_CWORD": "1"})
    assert out.split() == ["status"]
