"""Issue 10, findings 7 and 8, through the `mlops` command: user documents (params, rollout
specs, samples, an MLflow folder's MLmodel) read by one safe loader, and specs checked whole at
deploy time, so that none can exhaust memory or break the controller afterwards."""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, select, update

from mlops.store import schema as t
from tests.conftest import pg_schema_url
from tests.server import MLOPS, Cli, eventually

MEMORY_CAP = 2 << 30
"""Address space each command may use: ten times what one needs; a billion laughs needs more."""
MESSAGE_CAP = 400


def laughs(levels: int = 9) -> str:
    """A ~400-byte YAML flow list whose aliases stand for 10**levels strings."""
    items = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"[:levels]
    for prev, cur in itertools.pairwise(names):
        items.append(f"&{cur} [" + ",".join([f"*{prev}"] * 10) + "]")
    return "[" + ", ".join(items) + "]"


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


class CappedCli(Cli):
    """The CLI, each command under an address-space cap and a time limit."""

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                [MLOPS, *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
                preexec_fn=_cap_memory,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{args} did not end within 90 s") from exc
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr[-2000:])
        return done


def refused(cli: Cli, *args: str, names: tuple[str, ...]) -> str:
    """Run a command that must be refused as invalid input: exit 5, one short line on stderr
    naming each of `names`."""
    err = cli(*args, code=5).stderr.strip()
    assert err.startswith("error: ")
    assert "\n" not in err, err[:2000]
    assert len(err) < MESSAGE_CAP, err[:2000]
    for name in names:
        assert name in err, err
    return err


def cli_for(store_url: str, home: Path) -> CappedCli:
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_STORE": store_url, "COLUMNS": "200"}
    env.pop("MLOPS_TRUST", None)
    return CappedCli(env)


@pytest.fixture
def cli(tmp_path: Path, home: Path) -> CappedCli:
    """On SQLite: these documents are refused before any store is written to."""
    return cli_for(f"sqlite:///{tmp_path / 'store' / 'mlops.db'}", home)


@pytest.fixture
def deployed(cli: CappedCli, model_files: dict[str, Path]) -> CappedCli:
    """`api` serves m:1; m:2 is registered, ready for a rollout."""
    cli("register", "m", str(model_files["skops"]))
    cli("register", "m", str(model_files["onnx"]))
    cli("deploy", "api", "--model", "m:1")
    return cli


# finding 7: aliases ("billion laughs") and other documents past the loader's limits


@pytest.mark.parametrize("flavor", [(), ("--flavor", "params")])
def test_billion_laughs_params_file_is_refused(
    cli: CappedCli, tmp_path: Path, flavor: tuple[str, ...]
) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(f"threshold: {laughs()}\n")
    err = refused(cli, "register", "m", str(path), *flavor, names=(str(path), "aliases expanded"))
    assert "lol" not in err
    assert "m" not in [m["model"] for m in cli.json("models")]  # type: ignore[index, union-attr]


def test_billion_laughs_in_spec_error_kinds_is_refused(deployed: CappedCli, tmp_path: Path) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text(f"strategy: canary\nanalysis:\n  error_kinds: {laughs()}\n")
    err = refused(
        deployed,
        "deploy",
        "api",
        "--model",
        "m:2",
        "-f",
        str(spec),
        names=(str(spec), "aliases expanded"),
    )
    assert "lol" not in err
    assert deployed.json("status", "api")["revision"] == 1  # type: ignore[index]


def test_aliases_without_anchors_refused_too(deployed: CappedCli, tmp_path: Path) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text("strategy: canary\nanalysis:\n  error_kinds: *kinds\n")
    refused(deployed, "deploy", "api", "--model", "m:2", "-f", str(spec), names=("alias",))


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("threshold: " + "[" * 200 + "]" * 200 + "\n", ("nested deeper than 32",)),
        ('{"threshold": ' + "[" * 5000 + "]" * 5000 + "}", ("nested deeper than 32",)),
        ("threshold: " + "9" * 5000 + "\n", ("too many digits",)),
        ('{"threshold": ' + "9" * 5000 + "}", ("too many digits",)),
        ("labels: {0: " + "1" * 30 + "}\n", ("labels.0", "outside 64 bits")),
        ("labels: !!python/object/apply:os.system ['true']\n", ("YAML tag",)),
        ("labels: {0: " + "x" * 500_000 + "}\n", ("labels", "longer than 256")),
        ("labels:\n" + "".join(f"  {i}: c{i}\n" for i in range(60_000)), ("more than 100,000",)),
    ],
    ids=["yaml-deep", "json-deep", "yaml-digits", "json-digits", "int64", "tag", "long", "count"],
)
def test_params_past_the_limits_are_refused(
    cli: CappedCli, tmp_path: Path, text: str, names: tuple[str, ...]
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    refused(cli, "register", "p", str(path), "--flavor", "params", names=(str(path), *names))


def test_params_not_utf8_or_too_large(cli: CappedCli, tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"threshold: 0.5\nlabels: {0: \xff\xfe}\n")
    refused(cli, "register", "p", str(path), "--flavor", "params", names=("UTF-8",))
    path.write_bytes(b"threshold: 0.5\n" + b"#" * (1 << 20))
    refused(cli, "register", "p", str(path), "--flavor", "params", names=("1,048,576 bytes",))


def test_a_spec_with_a_small_anchor_loads(deployed: CappedCli, tmp_path: Path) -> None:
    # PyYAML writes an anchor for an object used twice: bounded aliases are fine.
    pause = {"duration": "1h", "requests": 10}
    steps = [{"set_weight": 5}, {"pause": pause}, {"set_weight": 50}, {"pause": pause}]
    spec = tmp_path / "rollout.yaml"
    spec.write_text(yaml.safe_dump({"strategy": "canary", "steps": steps}))
    assert "&id" in spec.read_text()
    deployed("deploy", "api", "--model", "m:2", "-f", str(spec))
    rollout = deployed.json("status", "api")["rollout"]  # type: ignore[index]
    assert (rollout["candidate_revision"], rollout["strategy"]) == (2, "canary")


def test_sample_and_mlmodel_go_through_the_loader(
    cli: CappedCli, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    sample = tmp_path / "sample.json"
    sample.write_text('{"instances": ' + "[" * 5000 + "]" * 5000 + "}")
    refused(
        cli,
        "register",
        "m",
        str(model_files["skops"]),
        "--sample",
        str(sample),
        names=(str(sample), "nested deeper"),
    )
    sample.write_bytes(b"a,b\n\xff,1\n")
    refused(cli, "register", "m", str(model_files["skops"]), "--sample", str(sample), names=())
    folder = tmp_path / "mlflow-model"
    folder.mkdir()
    (folder / "MLmodel").write_text(f"flavors:\n  python_function: {laughs()}\n")
    refused(cli, "register", "m", str(folder), "--trust", names=("MLmodel", "aliases expanded"))


# finding 8: specs checked whole at deploy time


def test_linear_plan_too_big_is_refused(deployed: CappedCli, tmp_path: Path) -> None:
    spec = tmp_path / "rollout.yaml"
    for step in ("0.0000001", "1e-7", "0.1"):
        spec.write_text(f"strategy: linear\nlinear: {{step: {step}, interval: 1s}}\n")
        refused(
            deployed,
            "deploy",
            "api",
            "--model",
            "m:2",
            "-f",
            str(spec),
            names=("linear.step", "400"),
        )
    status = deployed.json("status", "api")
    assert status["revision"] == 1
    assert status["rollout"] is None


BAD_NUMBERS = [
    ("analysis: {prior_c: .nan}", "analysis.prior_c"),
    ("analysis: {budget_s: .nan}", "analysis.budget_s"),
    ("analysis: {budget_s: .inf, deadline_s: .inf}", "analysis.budget_s"),
    ("analysis: {alpha: .nan}", "analysis.alpha"),
    ("analysis: {error_tolerance: .inf}", "analysis.error_tolerance"),
    ("analysis: {latency_quantiles: [.nan]}", "analysis.latency_quantiles.0"),
    ("analysis: {budget_requests: 99999999999999}", "analysis.budget_requests"),
    ("analysis: {error_kinds: [exception, boom]}", "analysis.error_kinds"),
    ("steps: [{set_weight: .nan}]", "steps.0.set_weight"),
    ("steps: [{pause: {duration: .inf}}]", "steps.0.pause.duration"),
    ("steps: [{pause: {duration: 99999999d}}]", "steps.0.pause.duration"),
    ("steps: [{pause: {requests: 9999999999999}}]", "steps.0.pause.requests"),
    ("progress_deadline: .nan", "progress_deadline"),
    ("keep_warm: .inf", "keep_warm"),
    ("strategy: linear\nlinear: {interval: .nan}", "linear.interval"),
    ("strategy: bluegreen\nbluegreen: {holdback: .nan}", "bluegreen.holdback"),
    ("strategy: shadow\nshadow: {percent: .nan}", "shadow.percent"),
    ("steps: [" + ", ".join(["{set_weight: 5}"] * 400) + "]", "steps"),
]


def test_non_finite_and_out_of_range_numbers_are_refused_at_deploy(
    deployed: CappedCli, tmp_path: Path
) -> None:
    spec = tmp_path / "rollout.yaml"
    for yaml_text, field in BAD_NUMBERS:
        spec.write_text(yaml_text + "\n")
        refused(deployed, "deploy", "api", "--model", "m:2", "-f", str(spec), names=(f"{field}:",))
    assert deployed.json("status", "api")["rollout"] is None  # type: ignore[index]


# a spec stored before these checks: status reads it, the controller ends the rollout


@contextmanager
def controller(store_url: str, home: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_STORE": store_url}
    with open(home / "controller.log", "wb") as log:
        process = subprocess.Popen(
            [MLOPS, "controller", "--tick", "0.1", "--active-tick", "0.1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_cap_memory,
        )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


def _store_spec(store_url: str, spec: dict[str, object]) -> None:
    """Write a spec as an older mlops stored it, without the checks made at deploy today."""
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(update(t.rollouts).where(t.rollouts.c.ended_at.is_(None)).values(spec=spec))
    engine.dispose()


LINEAR_1E7 = {"strategy": "linear", "linear": {"step": 1e-7, "interval": 1.0}}


@pytest.mark.parametrize(
    ("backend", "bad"),
    [
        ("sqlite", LINEAR_1E7),
        ("postgresql", LINEAR_1E7),
        ("sqlite", {"strategy": "canary", "analysis": {"prior_c": None}}),
        ("sqlite", {"strategy": "canary", "analysis": {"budget_s": float("nan")}}),
    ],
    ids=["linear-1e-7", "linear-1e-7-pg", "prior_c-nan-stored-as-null", "budget_s-nan"],
)
def test_a_stored_spec_that_fails_validation_is_aborted_not_retried(
    backend: str,
    bad: dict[str, object],
    tmp_path: Path,
    home: Path,
    model_files: dict[str, Path],
    request: pytest.FixtureRequest,
) -> None:
    if backend == "sqlite":
        store_url = f"sqlite:///{tmp_path / 'store' / 'mlops.db'}"
    else:
        store_url = pg_schema_url(request.getfixturevalue("pg_database"))
    cli = cli_for(store_url, home)
    cli("register", "m", str(model_files["skops"]))
    cli("register", "m", str(model_files["onnx"]))
    cli("deploy", "api", "--model", "m:1")
    good = home / "rollout.yaml"
    good.write_text("strategy: canary\nsteps: [{set_weight: 10}, {pause: {}}]\n")
    cli("deploy", "api", "--model", "m:2", "-f", str(good))
    _store_spec(store_url, json.loads(json.dumps(bad)))

    status = cli.json("status", "api")
    assert isinstance(status, dict)
    assert status["rollout"]["candidate_revision"] == 2
    assert "the stored rollout spec does not validate" in status["rollout"]["reasons"][0]
    assert "api" in cli("status", "api").stdout  # the table, too, is drawn

    cli("abort", "api", "--reason", "stop it")
    with controller(store_url, home):
        ended = eventually(
            lambda: cli.json("status", "api"),
            lambda s: s["rollout"] is None,  # type: ignore[index]
            timeout=60,
        )
    assert ended["revision"] == 1  # type: ignore[index]
    candidate = cli.json("history", "api")[0]  # type: ignore[index]
    assert (candidate["revision"], candidate["status"]) == (2, "aborted")  # type: ignore[index]
    engine = create_engine(store_url)
    with engine.connect() as conn:
        action, trigger, reason = conn.execute(
            select(t.events.c.action, t.events.c.trigger, t.events.c.reason)
            .order_by(t.events.c.id.desc())
            .limit(1)
        ).one()
    engine.dispose()
    assert (action, trigger) == ("abort", "health")
    assert reason.startswith("the stored rollout spec does not validate: ")
    assert len(reason) < MESSAGE_CAP
    assert "tick failed" not in (home / "controller.log").read_text()
    quarantined = [v for v in cli.json("models", "m") if v["status"] == "quarantined"]  # type: ignore[union-attr, index]
    assert quarantined == []
