"""`mlops serve --workers 2`: every worker follows route changes, and their figures add up."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import pg_schema_url
from tests.integration.test_gateway import ROW, Gateway, sqlite_url, start_gateway, unique
from tests.server import MLOPS, SETTLE_S, eventually, server_env


@pytest.fixture(scope="module")
def sqlite_workers(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("workers-sqlite")
    with start_gateway(sqlite_url(root), root, model_files, "--workers", "2") as gw:
        yield gw


@pytest.fixture(scope="module")
def postgresql_workers(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path], pg_database: str
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("workers-postgresql")
    with start_gateway(pg_schema_url(pg_database), root, model_files, "--workers", "2") as gw:
        yield gw


@pytest.fixture(params=["sqlite", "postgresql"])
def workers(request: pytest.FixtureRequest) -> Gateway:
    return request.getfixturevalue(f"{request.param}_workers")  # type: ignore[no-any-return]


def views(gw: Gateway, probes: int = 30) -> dict[str, dict[str, Any]]:
    """/v1/gateway as each worker answers it; a new connection per probe reaches either one."""
    out = {}
    for _ in range(probes):
        status = httpx.get(f"{gw.server.url}/v1/gateway", timeout=10).json()
        out[status["worker"]] = status
    return out


def serving(views: dict[str, dict[str, Any]], deployment: str, revision: int) -> bool:
    """Whether two workers answered, and both serve `revision` of `deployment`."""
    return len(views) == 2 and all(
        v["deployments"].get(deployment, {}).get("stable_revision") == revision
        for v in views.values()
    )


def deploy_on_both(gw: Gateway, deployment: str, *refs: str) -> None:
    for ref in refs:
        revision = gw.client.deploy(deployment, model=ref).revision
    eventually(lambda: views(gw), lambda v: serving(v, deployment, revision), timeout=SETTLE_S)


def predict_fresh(gw: Gateway, deployment: str) -> httpx.Response:
    """A request on a new connection (a kept-alive one would stay on one worker)."""
    return httpx.post(
        f"{gw.server.url}/v1/models/{deployment}:predict", json={"instances": ROW}, timeout=10
    )


def test_a_route_change_reaches_every_worker(workers: Gateway) -> None:
    deployment = unique("api")
    deploy_on_both(workers, deployment, "lr:1", "lr:2")
    workers.cli("rollback", deployment)  # another process writes revision 3 (lr:1)
    first = eventually(
        lambda: predict_fresh(workers, deployment),
        lambda r: r.headers["x-release-revision"] == "3",
        timeout=SETTLE_S,
    )
    assert first.headers["x-model-version"] == "lr:1"
    # One look at both workers is 30 requests: on a busy machine that alone can take seconds.
    eventually(lambda: views(workers), lambda v: serving(v, deployment, 3), timeout=SETTLE_S)
    responses = [predict_fresh(workers, deployment) for _ in range(50)]
    assert {r.status_code for r in responses} == {200}
    served = {(r.headers["x-release-revision"], r.headers["x-model-version"]) for r in responses}
    assert served == {("3", "lr:1")}


def test_measurements_and_metrics_add_up_across_workers(workers: Gateway) -> None:
    deployment = unique("api")
    deploy_on_both(workers, deployment, workers.register("joblib"))  # a batcher of its own

    def rows_per_worker() -> list[int]:
        return [
            v["deployments"][deployment]["targets"]["1"]["rows"] for v in views(workers).values()
        ]

    sent = 0
    per_worker: list[int] = []
    while sent < 200:  # until both workers have served some (new connections spread out)
        for _ in range(10):
            assert predict_fresh(workers, deployment).status_code == 200
            sent += 1
        per_worker = rows_per_worker()
        if len(per_worker) == 2 and all(per_worker):
            break
    assert len(per_worker) == 2
    assert all(per_worker), per_worker
    assert sum(per_worker) == sent

    found = eventually(
        lambda: workers.measured(deployment),
        lambda m: m.get((1, "live"), {}).get("requests") == sent,
        timeout=SETTLE_S,
    )
    assert found[(1, "live")]["error_rate"] == 0

    text = httpx.get(f"{workers.server.url}/metrics", timeout=10).text
    total = sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mlops_requests_total" and s.labels.get("deployment") == deployment
    )
    assert total == sent


def _listeners(port: int) -> int:
    """Listening TCP sockets on `port` in this machine's table (IPv4)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for line in lines
        if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"  # LISTEN
    )


def test_each_worker_listens_on_its_own_socket_and_a_taken_port_is_refused(
    sqlite_workers: Gateway,
) -> None:
    """One socket shared by the workers lets one of them take a client's every connection;
    each worker's own (SO_REUSEPORT) lets the kernel spread them."""
    port = httpx.URL(sqlite_workers.server.url).port
    assert port is not None
    assert _listeners(port) == 2
    clients = [httpx.Client(timeout=30) for _ in range(16)]  # 16 connections, all kept open
    try:
        seen = {c.get(f"{sqlite_workers.server.url}/v1/gateway").json()["worker"] for c in clients}
    finally:
        for c in clients:
            c.close()
    assert len(seen) == 2  # all 16 on one worker: 2 chances in 65,536 with the kernel's hash
    done = subprocess.run(
        [MLOPS, "serve", "--port", str(port), "--workers", "2"],
        env=server_env(sqlite_workers.store_url, sqlite_workers.home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 5, (done.stdout, done.stderr)
    assert f"cannot listen on 127.0.0.1:{port}: the address is in use" in done.stderr
    assert _listeners(port) == 2
