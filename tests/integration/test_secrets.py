"""Secrets never leak: a whole release cycle through the CLI and the control API, with an API
token, a webhook secret and a PostgreSQL resource whose URL holds a password; then every log
line, output, answer, metric, alert and stored event is searched for each secret."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from mlops.core.access import TOKEN_PREFIX
from tests.data_resources import MIGRATE, PostgresFeatures
from tests.server import MLOPS, Cli, eventually, running_server, server_env

pytestmark = pytest.mark.postgres


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    bodies: list[str] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            bodies.append(json.dumps(dict(self.headers)) + self.rfile.read(length).decode())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_no_secret_reaches_a_log_an_output_a_metric_or_an_event(
    monkeypatch: pytest.MonkeyPatch,
    pg_database: str,
    tmp_path: Path,
    model_files: dict[str, Path],
    receiver: tuple[str, list[str]],
) -> None:
    hook, alerts = receiver
    password = f"Pw{secrets.token_hex(8)}"
    hook_secret = f"hook-{secrets.token_hex(12)}"
    monkeypatch.setenv("HOOK_SECRET", hook_secret)  # the server's, and each command's
    store_url = f"sqlite:///{tmp_path / 'store' / 'mlops.db'}"
    home = tmp_path / "home"
    features = PostgresFeatures(pg_database)
    features.create()
    try:
        features.build()
        with_password = features.location.replace("://postgres@", f"://postgres:{password}@")
        assert password in with_password
        env = {**server_env(store_url, home), "COLUMNS": "200"}
        cli = Cli(env)
        outputs: list[str] = []

        def run(*args: str, code: int = 0) -> Any:
            done = cli(*args, code=code)
            outputs.extend([done.stdout, done.stderr])
            return done

        run("register", "m", str(model_files["skops"]))
        run("register", "m", str(model_files["onnx"]))
        run("deploy", "api", "--model", "m:1")
        run("data", "add", "api", "features", "--postgresql", with_password)
        made = json.loads(cli("token", "create", "root", "--role", "admin", "-o", "json").stdout)
        token = made["secret"]
        random_part = token[len(TOKEN_PREFIX) + 13 :]
        sql = tmp_path / "migrate.sql"
        sql.write_text(MIGRATE)
        spec = {
            "steps": [{"set_weight": 50}, {"pause": {"duration": "1h"}}],
            "notify": [{"webhook": hook, "secret_env": "HOOK_SECRET"}],
        }
        with running_server(store_url, home, "--predict-token") as server:
            answers = _release_cycle(server.url, token, spec, str(sql))
            eventually(lambda: len(alerts), lambda n: n >= 1, timeout=60)
            metrics = httpx.get(f"{server.url}/metrics").text
            log = server.log.read_text()
        for args in (
            ("status",),
            ("history", "api"),
            ("events",),
            ("data", "list", "api"),
            ("snapshots", "api"),
            ("token", "list"),
        ):
            run(*args)
            run(*args, "-o", "json")
        unreachable = with_password.replace(":5432/", ":1/")
        failed = subprocess.run(
            [MLOPS, "data", "add", "api", "broken", "--postgresql", unreachable],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert failed.returncode != 0
        outputs.extend([failed.stdout, failed.stderr])
        events = _stored_events(store_url)
    finally:
        features.drop()
    searched = {
        "CLI output": "\n".join(outputs),
        "API answers": "\n".join(answers),
        "metrics": metrics,
        "server log": log,
        "alerts": "\n".join(alerts),
        "stored events": events,
    }
    for where, found in searched.items():
        for secret in (password, hook_secret, random_part):
            assert secret not in found, f"a secret reached the {where}"
    assert "***" in searched["CLI output"]  # the URL is shown, its password hidden


def _release_cycle(url: str, token: str, spec: dict[str, Any], migration: str) -> list[str]:
    headers = {"authorization": f"Bearer {token}"}
    answers = []
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for method, path, body in [
            ("POST", "/api/v1/deployments/api/deploy", {"model": "m:2", "migration": migration}),
            ("POST", "/api/v1/deployments/api/rollback", {"dry_run": True}),
            ("POST", "/api/v1/deployments/api/rollback", {"reason": "back"}),
            ("POST", "/api/v1/deployments/api/deploy", {"model": "m:2", "rollout": spec}),
            ("GET", "/api/v1/deployments/api", None),
            ("GET", "/api/v1/deployments/api/history", None),
            ("GET", "/api/v1/deployments/api/data", None),
            ("GET", "/api/v1/deployments/api/snapshots", None),
            ("GET", "/api/v1/events", None),
            ("GET", "/api/v1/tokens", None),
            ("POST", "/api/v1/deployments/api/abort", {"reason": "alert me"}),
        ]:
            response = http.request(method, path, json=body)
            assert response.status_code < 300, (path, response.text)
            answers.append(response.text + json.dumps(dict(response.headers)))
        refused = httpx.get(f"{url}/api/v1/models", headers={"authorization": f"Bearer {token}x"})
        answers.append(refused.text)
    return answers


def _stored_events(store_url: str) -> str:
    engine = create_engine(store_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM events")).all()
        rows += conn.execute(text("SELECT * FROM outbox")).all()
    engine.dispose()
    return "\n".join(repr(tuple(r)) for r in rows) + os.linesep
