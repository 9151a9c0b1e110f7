"""Issue 10, slice B: code that must not run (skops, MLflow links), artifacts checked before a
deploy, alerts isolated per subscription. Through the real CLI and a real `mlops serve`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.server import Cli


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'mlops.db'}"


@pytest.fixture
def cli(sqlite_url: str, home: Path) -> Cli:
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_STORE": sqlite_url, "COLUMNS": "200"}
    env.pop("MLOPS_TRUST", None)
    return Cli(env)


# finding 5: skops


def _folder_deleting_skops(path: Path, victim: Path) -> None:
    """A .skops file holding a numpy DataSource whose destructor removes `victim`."""
    import skops.io
    from numpy.lib.npyio import DataSource

    source = DataSource(str(path.parent))
    source._istmpdest = True  # type: ignore[attr-defined]
    source._destpath = str(victim)  # type: ignore[attr-defined]
    try:
        path.write_bytes(skops.io.dumps(source))
    finally:
        source._istmpdest = False  # type: ignore[attr-defined]


def test_a_skops_file_with_a_type_skops_does_not_trust_needs_trust(
    cli: Cli, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("still here")
    crafted = tmp_path / "crafted.skops"
    _folder_deleting_skops(crafted, victim)

    err = cli("register", "m", str(crafted), code=5).stderr
    assert (victim / "keep.txt").read_text() == "still here"
    assert err.startswith("error: ")
    assert "numpy.lib.npyio.DataSource" in err
    assert "--trust" in err
    assert cli.json("models") == []


def test_tree_models_need_trust_and_plain_ones_do_not(
    cli: Cli, model_files: dict[str, Path], tmp_path: Path
) -> None:
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.models import training_data

    x, y = training_data()
    pipeline = tmp_path / "pipeline.skops"
    skops.io.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), pipeline)
    cli("register", "plain", str(pipeline))
    cli("register", "plain", str(model_files["skops"]))

    err = cli("register", "forest", str(model_files["skops_forest"]), code=5).stderr
    assert "sklearn.tree._tree.Tree" in err
    cli("register", "forest", str(model_files["skops_forest"]), "--trust")
    versions = cli.json("models", "forest")
    assert isinstance(versions, list)
    assert [(v["version"], v["trusted"]) for v in versions] == [(1, True)]


# finding 6: links in MLflow folders


def _link(folder: Path, outside: Path, kind: str) -> tuple[str, ...]:
    """Add links of `kind` to a copy of an MLflow folder; their names."""
    if kind == "file outside":
        (folder / "notes.txt").symlink_to(outside / "secret.txt")
        return ("notes.txt",)
    if kind == "folder outside":
        (folder / "extra").symlink_to(outside, target_is_directory=True)
        return ("extra",)
    if kind == "MLmodel outside":
        (outside / "MLmodel").write_bytes((folder / "MLmodel").read_bytes())
        (folder / "MLmodel").unlink()
        (folder / "MLmodel").symlink_to(outside / "MLmodel")
        return ("MLmodel",)
    if kind == "loop":
        (folder / "loop").symlink_to(folder, target_is_directory=True)
        return ("loop",)
    assert kind == "cycle"
    (folder / "a").symlink_to(folder / "b")
    (folder / "b").symlink_to(folder / "a")
    return ("a", "b")


@pytest.mark.parametrize(
    "kind", ["file outside", "folder outside", "MLmodel outside", "loop", "cycle"]
)
def test_an_mlflow_folder_with_a_link_is_refused(
    cli: Cli, model_files: dict[str, Path], tmp_path: Path, home: Path, kind: str
) -> None:
    import shutil

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET-0451")
    folder = tmp_path / "model"
    shutil.copytree(model_files["mlflow"], folder)
    names = _link(folder, outside, kind)

    done = cli("register", "m", str(folder), "--trust", code=5)
    err = done.stderr
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    assert any(f": {name} is a symbolic link" in err for name in names)
    assert "internal error" not in err
    assert "Recursion" not in err
    assert cli.json("models") == []
    stored = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert not [p for p in stored if b"TOP-SECRET-0451" in p.read_bytes()]


# finding 10: a deploy verifies its artifacts


def _blob(home: Path, cli: Cli, model: str, version: int) -> Path:
    versions = cli.json("models", model)
    assert isinstance(versions, list)
    sha = next(v["sha256"] for v in versions if v["version"] == version)
    path = home / "artifacts" / "blobs" / sha[:2] / sha
    assert path.is_file()
    return path


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_deploy_rollback_and_traffic_refuse_a_corrupt_or_missing_artifact(
    cli: Cli, model_files: dict[str, Path], home: Path
) -> None:
    cli("register", "m", str(model_files["onnx"]))
    cli("register", "m", str(model_files["skops"]))
    cli("register", "m", str(model_files["joblib"]), "--trust")
    cli("deploy", "api", "--model", "m:1")
    cli("deploy", "api", "--model", "m:2")
    _corrupt(_blob(home, cli, "m", 1))
    _blob(home, cli, "m", 3).unlink()
    before = cli("history", "api", "-o", "json").stdout

    for args, problem in [
        (["deploy", "api", "--model", "m:3"], "missing"),
        (["deploy", "api", "--model", "m:3", "--strategy", "canary"], "missing"),
        (["deploy", "api", "--model", "m:1", "--force"], "corrupt"),
        (["rollback", "api"], "corrupt"),
        (["rollback", "api", "--version", "1"], "corrupt"),
        (["rollback", "api", "--revision", "1"], "corrupt"),
        (["traffic", "api", "--weight", "1=90", "--weight", "2=10"], "corrupt"),
    ]:
        err = cli(*args, code=5).stderr
        assert err.startswith("error: m:"), (args, err)
        assert "cannot be served" in err
        assert problem in err
        assert len(err.strip().splitlines()) == 1
    assert cli("history", "api", "-o", "json").stdout == before
    status = cli.json("status", "api")
    assert isinstance(status, dict)
    assert status["components"] == {"model": {"model": "m", "version": 2}}


def test_the_python_client_refuses_a_corrupt_artifact(
    sqlite_url: str, home: Path, model_files: dict[str, Path]
) -> None:
    from mlops import Client, IntegrityError

    with Client(sqlite_url, home=home) as client:
        client.register("m", model_files["onnx"])
        second = client.register("m", model_files["skops"])
        client.deploy("api", model="m:1")
        sha = second.artifact_sha256
        _corrupt(home / "artifacts" / "blobs" / sha[:2] / sha)
        with pytest.raises(IntegrityError, match=r"m:2 cannot be served.*corrupt"):
            client.deploy("api", model="m:2")
        assert [r.revision for r in client.history("api")] == [1]


def test_readiness_names_the_failure_without_the_store_path(
    cli: Cli, model_files: dict[str, Path], home: Path, sqlite_url: str
) -> None:
    import httpx

    from tests.models import training_data
    from tests.server import eventually, running_server

    cli("register", "m", str(model_files["onnx"]))
    cli("deploy", "api", "--model", "m:1")
    _corrupt(_blob(home, cli, "m", 1))
    with running_server(sqlite_url, home) as server:
        answer = eventually(
            lambda: httpx.get(f"{server.url}/v2/health/ready", timeout=10),
            lambda r: r.status_code == 503 and "api" in r.json().get("failures", {}),
            timeout=60,
        )
        # Nothing this host could serve: a load balancer's check drains it too.
        serving = httpx.get(f"{server.url}/v1/gateway/serving", timeout=10)
        assert serving.status_code == 503
        assert serving.json()["serving"] is False
    cli("register", "ok", str(model_files["skops"]))
    cli("deploy", "ok", "--model", "ok:1")
    with running_server(sqlite_url, home) as server:
        serving = eventually(
            lambda: httpx.get(f"{server.url}/v1/gateway/serving", timeout=10),
            lambda r: r.status_code == 200,
        )
        # One broken deployment drains no host: the other one is served.
        assert serving.json()["failures"].keys() == {"api"}
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 503
        row = {"instances": training_data()[0][:1].tolist()}
        predicted = httpx.post(f"{server.url}/v1/models/ok:predict", json=row, timeout=10)
        assert predicted.status_code == 200
    reason = answer.json()["failures"]["api"]
    assert "m:1" in reason
    assert "missing or corrupt" in reason
    assert str(home) not in answer.text
    assert "/" not in reason


# finding 9: alerts isolated per subscription


class Hooks:
    """A real HTTP receiver on loopback: the alert kinds POSTed to each path."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.kinds: dict[str, list[str]] = {}
        lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    hooks.kinds.setdefault(self.path, []).append(self.headers["X-Mlops-Event"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def got(self, path: str) -> list[str]:
        return list(self.kinds.get(path, []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


UNSET = "MLOPS_TEST_HOOK_SECRET_NOT_SET"


def _failures_metric(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('mlops_alert_failures_total{channel_kind="webhook"}'):
            return float(line.split()[-1])
    return 0.0


def _rollout_then_abort(cli: Cli, deployment: str, spec: Path, version: int) -> None:
    cli("deploy", deployment, "--model", f"m:{version}", "-f", str(spec))
    cli("abort", deployment, "--reason", "test")


def test_a_notifier_that_cannot_be_built_fails_alone_and_visibly(
    cli: Cli, model_files: dict[str, Path], home: Path, sqlite_url: str, tmp_path: Path
) -> None:
    import httpx

    from mlops import Client
    from tests.server import eventually, running_server

    os.environ.pop(UNSET, None)
    cli.env.pop(UNSET, None)
    hooks = Hooks()
    broken, good = tmp_path / "broken.yaml", tmp_path / "good.yaml"
    broken.write_text(
        "strategy: canary\nnotify:\n"
        f"  - {{webhook: '{hooks.url}/broken', secret_env: {UNSET}, events: ['*']}}\n"
    )
    good.write_text(f"strategy: canary\nnotify:\n  - {{webhook: '{hooks.url}/good'}}\n")
    cli("register", "m", str(model_files["onnx"]))
    cli("register", "m", str(model_files["skops"]))
    cli("register", "m", str(model_files["onnx"]))
    for name in ("broken-api", "good-api"):
        cli("deploy", name, "--model", "m:1")

    def failed_events() -> list[str]:
        with Client(sqlite_url, home=home) as client:
            return [e.action for e in client.events("broken-api") if e.action == "alert_failed"]

    try:
        with running_server(sqlite_url, home) as server:
            _rollout_then_abort(cli, "broken-api", broken, 2)
            _rollout_then_abort(cli, "good-api", good, 2)
            eventually(lambda: hooks.got("/good"), lambda k: "aborted" in k, timeout=60)
            eventually(failed_events, bool, timeout=60)
            eventually(
                lambda: _failures_metric(httpx.get(f"{server.url}/metrics", timeout=10).text),
                lambda n: n >= 1,
                timeout=60,
            )
        assert hooks.got("/broken") == []

        # After a restart: the broken receiver's alerts still fail (retried, counted), and a
        # new alert to the working one still arrives.
        with running_server(sqlite_url, home) as server:
            _rollout_then_abort(cli, "good-api", good, 3)
            eventually(lambda: hooks.got("/good"), lambda k: k.count("aborted") == 2, timeout=60)
            eventually(
                lambda: _failures_metric(httpx.get(f"{server.url}/metrics", timeout=10).text),
                lambda n: n >= 1,
                timeout=60,
            )
        assert hooks.got("/broken") == []
        assert failed_events()
        with Client(sqlite_url, home=home) as client:
            event = next(e for e in client.events("broken-api") if e.action == "alert_failed")
        assert UNSET in (event.reason or "")
        assert event.details["channel_kind"] == "webhook"
    finally:
        hooks.close()


MALFORMED = [
    ("{webhook: 'file:///etc/passwd'}", "notify.0.webhook"),
    ("{webhook: 'ftp://example.com/x'}", "notify.0.webhook"),
    ("{slack: 'http://:80/x'}", "notify.0.slack"),
    ("{webhook: 'http://example.com:http/x'}", "notify.0.webhook"),
    ("{webhook: 'http://example.com/x', secret_env: 'NOT-A-NAME'}", "notify.0.secret_env"),
    ("{slack: 'https://example.com/x', secret_env: S}", "notify.0"),
    ("{secret_env: S}", "notify.0"),
    ("{log: true, events: [rolled_bakc]}", "notify.0.events"),
]


def test_a_malformed_notify_entry_is_refused_at_deploy(
    cli: Cli, model_files: dict[str, Path], tmp_path: Path
) -> None:
    cli("register", "m", str(model_files["onnx"]))
    cli("register", "m", str(model_files["skops"]))
    cli("deploy", "api", "--model", "m:1")
    before = cli("history", "api", "-o", "json").stdout
    spec = tmp_path / "spec.yaml"
    for entry, field in MALFORMED:
        spec.write_text(f"strategy: canary\nnotify:\n  - {entry}\n")
        err = cli("deploy", "api", "--model", "m:2", "-f", str(spec), code=5).stderr
        assert f"{field}:" in err, (entry, err)
        assert len(err.strip().splitlines()) == 1
    assert cli("history", "api", "-o", "json").stdout == before
