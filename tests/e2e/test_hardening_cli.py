"""Issue 10, the CLI and the audit trail: who did what is recorded as it happened, numbers and
names from a user are bounded before the store sees them, secrets and control characters
never reach the terminal. Everything through the real `mlops` command."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.server import MLOPS, Cli, eventually

HOLD = """\
strategy: canary
steps:
  - set_weight: 10
  - pause: {}
"""


@pytest.fixture
def cli(store_url: str, home: Path) -> Cli:
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_STORE": store_url, "COLUMNS": "250"}
    for name in ("MLOPS_TRUST", "MLOPS_ACTOR"):
        env.pop(name, None)
    return Cli(env)


def as_actor(cli: Cli, actor: str | None) -> Cli:
    env = dict(cli.env)
    if actor is None:
        env.pop("MLOPS_ACTOR", None)
    else:
        env["MLOPS_ACTOR"] = actor
    return Cli(env)


@contextmanager
def controller(cli: Cli) -> Iterator[None]:
    process = subprocess.Popen(
        [MLOPS, "controller", "--tick", "0.1", "--active-tick", "0.1"],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def events(cli: Cli, deployment: str) -> list[dict[str, Any]]:
    found = cli.json("events", deployment)
    assert isinstance(found, list)
    return found


def by_action(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["action"]: e for e in reversed(found)}  # the newest of each action


@pytest.fixture
def rolling(cli: Cli, model_files: dict[str, Path], tmp_path: Path) -> Cli:
    """`api` serving m:1, with m:2 rolling out and held at a step until promoted."""
    cli("register", "m", str(model_files["skops"]))
    cli("register", "m", str(model_files["onnx"]))
    cli("deploy", "api", "--model", "m:1")
    spec = tmp_path / "hold.yaml"
    spec.write_text(HOLD)
    cli("deploy", "api", "--model", "m:2", "-f", str(spec))
    return cli


# finding 4: the audit trail


def test_manual_commands_are_recorded_as_manual_with_the_actor_who_asked(rolling: Cli) -> None:
    cli = rolling
    as_actor(cli, "alice")("pause", "api", "--reason", "look first")
    as_actor(cli, "bob")("resume", "api")
    as_actor(cli, None)("promote", "api", "--full", "--reason", "looks good")
    with controller(cli):
        found = eventually(
            lambda: events(cli, "api"), lambda es: any(e["action"] == "promote" for e in es), 60
        )
    last = by_action(found)
    os_user = f"{getpass.getuser()}@{socket.gethostname()}"
    paused = next(e for e in found if e["reason"] == "paused by hand: look first")
    assert (paused["action"], paused["trigger"], paused["actor"], paused["actor_source"]) == (
        "rollout_paused",
        "manual",
        "alice",
        "claimed",
    )
    assert (last["rollout_resumed"]["trigger"], last["rollout_resumed"]["actor"]) == (
        "manual",
        "bob",
    )
    promoted = last["promote"]
    assert (promoted["trigger"], promoted["actor"], promoted["actor_source"]) == (
        "manual",
        os_user,
        "os",
    )
    assert "looks good" in promoted["reason"]
    # The deploy that started the rollout was the OS user's; the promotion's event shows who.
    table = cli("events", "api").stdout
    assert "alice (claimed)" in table
    assert os_user in table


def test_an_abort_is_recorded_with_its_actor_and_analysis_stays_the_controllers(
    rolling: Cli,
) -> None:
    cli = rolling
    as_actor(cli, "carol")("abort", "api", "--reason", "wrong data")
    with controller(cli):
        found = eventually(
            lambda: events(cli, "api"), lambda es: any(e["action"] == "abort" for e in es), 60
        )
    aborted = by_action(found)["abort"]
    assert (aborted["trigger"], aborted["actor"], aborted["actor_source"]) == (
        "manual",
        "carol",
        "claimed",
    )
    # The rollout itself was started by the OS user; only the abort is carol's.
    assert by_action(found)["rollout"]["actor_source"] == "os"
    assert "carol (claimed)" in cli("events", "api").stdout


@pytest.mark.parametrize(
    ("actor", "message"),
    [
        ("ali\x1b[31mce", "MLOPS_ACTOR"),
        ("alice\n", "MLOPS_ACTOR"),
        ("a" * 300, "MLOPS_ACTOR"),
        ("   ", "MLOPS_ACTOR"),
    ],
)
def test_a_claimed_actor_with_control_characters_or_too_long_is_refused(
    cli: Cli, model_files: dict[str, Path], actor: str, message: str
) -> None:
    cli("register", "m", str(model_files["skops"]))
    err = as_actor(cli, actor)("deploy", "api", "--model", "m:1", code=5).stderr
    assert err.startswith("error: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "\x1b" not in err
    cli("status", "api", code=3)  # nothing was written


# finding 11: numbers and names


def snapshot(cli: Cli) -> tuple[str, ...]:
    """What the store says about `api` and `m`, to check that a refused command wrote nothing."""
    return tuple(cli(*args, "-o", "json").stdout for args in (["history", "api"], ["models", "m"]))


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> tuple[Cli, tuple[str, ...]]:
    """One store (SQLite: these inputs are refused before any store sees them) serving `api`
    from m:1, shared by the tests that check refusals, with what it held before them."""
    home = tmp_path_factory.mktemp("refusals")
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_STORE": f"sqlite:///{home / 'm.db'}"}
    for name in ("MLOPS_TRUST", "MLOPS_ACTOR"):
        env.pop(name, None)
    cli = Cli({**env, "COLUMNS": "250"})
    cli("register", "m", str(model_files["skops"]))
    cli("deploy", "api", "--model", "m:1")
    return cli, snapshot(cli)


HUGE = str(2**64)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["rollback", "api", "--revision", HUGE], 2, "--revision"),
        (["rollback", "api", "--version", HUGE], 2, "--version"),
        (["rollback", "api", "--revision", "99999999999"], 2, "--revision"),
        (["deploy", "api", "--model", f"m:{HUGE}"], 5, "version"),
        (["deploy", "api", "--model", "m:²"], 5, "version"),
        (["deploy", "api", "--component", f"model=m:{HUGE}"], 5, "version"),
        (["quarantine", f"m:{HUGE}", "--reason", "x"], 5, "version"),
        (["traffic", "api", "--weight", f"{HUGE}=10"], 5, "weight"),
        (["traffic", "api", "--weight", "1=nan"], 5, "weight"),
        (["traffic", "api", "--weight", "1=1e309"], 5, "weight"),
        (["traffic", "api", "--weight", "1=100", "--shadow", "1=-inf"], 5, "shadow"),
        (["history", "api", "--limit", HUGE], 2, "--limit"),
        (["history", "api", "--before", HUGE], 2, "--before"),
        (["models", "m", "--limit", HUGE], 2, "--limit"),
        (["models", "m", "--limit", "-1"], 2, "--limit"),
        (["events", "api", "--limit", HUGE], 2, "--limit"),
        (["data", "add", "api", "f", "--directory", ".", "--keep-last", HUGE], 2, "--keep-last"),
        (["data", "add", "api", "f", "--directory", ".", "--max-age-days", "nan"], 2, "--max-age"),
        (["data", "add", "api", "f", "--directory", ".", "--max-age-days", "inf"], 2, "--max-age"),
        (["controller", "--tick", "nan"], 2, "--tick"),
        (["controller", "--lease", "inf"], 2, "--lease"),
        (["serve", "--port", "99999"], 2, "--port"),
        (["serve", "--max-body-mb", "inf"], 2, "--max-body-mb"),
        (["serve", "--timeout", "nan"], 2, "--timeout"),
        (["serve", "--retention-days", "1e308"], 2, "--retention-days"),
        (["deploy", "api", "--model", "m:1", "--reason", "x" * 5000], 5, "--reason"),
    ],
)
def test_numbers_out_of_range_are_refused_with_their_exit_code(
    served: tuple[Cli, tuple[str, ...]], args: list[str], code: int, message: str
) -> None:
    cli, before = served
    done = cli(*args, code=code)
    assert "internal error" not in done.stderr
    assert message in done.stderr
    if code == 5:
        assert done.stderr.startswith("error: ")
        assert len(done.stderr.strip().splitlines()) == 1
    assert snapshot(cli) == before


@pytest.mark.parametrize(
    "args",
    [
        ["register", "m\n", "MODEL"],
        ["deploy", "api\n", "--model", "m:1"],
        ["deploy", "api", "--component", "model\n=m:1"],
        ["deploy", "api", "--model", "m\n:1"],
        ["rollback", "api", "--component", "model\n"],
        ["data", "add", "api", "feat\n", "--directory", "."],
        ["register", "m", "MODEL", "--tag", "team\n=risk"],
        ["register", "m", "MODEL", "--tag", "team=ri\x1bsk"],
    ],
)
def test_names_are_matched_whole(
    served: tuple[Cli, tuple[str, ...]], model_files: dict[str, Path], args: list[str]
) -> None:
    cli, before = served
    args = [str(model_files["skops"]) if a == "MODEL" else a for a in args]
    err = cli(*args, code=5).stderr
    assert err.startswith("error: invalid ")
    assert "\x1b" not in err
    assert snapshot(cli) == before


# finding 14: secrets


@pytest.mark.postgres
def test_a_postgresql_password_never_reaches_output_or_errors(
    cli: Cli, model_files: dict[str, Path], pg_database: str
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_database).set(password="s3cret-pw")
    location = url.render_as_string(hide_password=False)
    assert "s3cret-pw" in location
    cli("register", "m", str(model_files["skops"]))
    outputs = [
        cli("data", "add", "api", "features", "--postgresql", location).stdout,
        cli("data", "add", "api", "features", "--postgresql", location, "-o", "json").stdout,
        cli("data", "list", "api").stdout,
        cli("data", "list", "api", "-o", "json").stdout,
    ]
    listed = cli.json("data", "list", "api")
    assert isinstance(listed, list)
    assert listed[0]["location"].startswith("postgresql+psycopg://postgres:***@")
    unreachable = url.set(port=1).render_as_string(hide_password=False)
    outputs.append(cli("data", "add", "api", "gone", "--postgresql", unreachable, code=6).stderr)
    outputs.append(
        cli(
            "data", "add", "api", "odd", "--postgresql", "mysql://root:s3cret-pw@h/db", code=5
        ).stderr
    )
    for text in outputs:
        assert "s3cret-pw" not in text
    assert "***" in outputs[-1]


# finding 15: control characters and markup


NASTY = "bad\x1b[2J\x1b]0;pwned\x07 day\r[bold red]x[/] :warning: \u202eok"


def test_control_characters_and_markup_never_reach_the_terminal(
    cli: Cli, model_files: dict[str, Path]
) -> None:
    cli("register", "m", str(model_files["skops"]))
    cli("register", "m", str(model_files["onnx"]))
    cli("deploy", "api", "--model", "m:1")
    cli("deploy", "api", "--model", "m:2", "--reason", NASTY)
    cli("quarantine", "m:1", "--reason", NASTY)
    outputs = [
        cli("history", "api").stdout,
        cli("events", "api").stdout,
        cli("models", "m").stdout,
        cli("quarantine", "m:1", "--reason", NASTY).stdout,
        cli("rollback", "api", code=4).stderr,
    ]
    for text in outputs:
        assert not any(c in text for c in "\x1b\x07\r\u202e"), text
        assert "[bold red]x[/]" in text.replace("\n", "")
        assert ":warning:" in text
    assert "\\x1b[2J" in outputs[0]
    # JSON keeps the exact text, escaped as JSON escapes it.
    history = cli.json("history", "api")
    assert isinstance(history, list)
    assert history[0]["event"]["reason"] == NASTY
    raw = cli("history", "api", "-o", "json").stdout
    assert "\x1b" not in raw
    assert "\\u001b" in raw
