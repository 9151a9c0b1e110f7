"""Prometheus metrics in rollout analysis: a real Prometheus scrapes a real `mlops serve`, whose
controller queries it while it rolls candidates out."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops import Client, InvalidInput
from mlops.controller.prometheus import PrometheusProvider, reading_of
from mlops.core.metric_checks import NoData, QueryError
from tests.models import training_data
from tests.server import MLOPS, STARTUP_S, Server, free_port, running_server, server_env

CANDIDATE = 'mlops_predictions_total{deployment="{deployment}",revision="{candidate_revision}"'
CANDIDATE_SHARE = (
    f'sum(rate({CANDIDATE},value="1"}}[10s])) / sum(rate({CANDIDATE}}}[10s]))'
    f" unless on() min(count_over_time({CANDIDATE}}}[10s])) < 3"
)
"""The share of the candidate's predictions that are the positive class, over 10 s; no data
until each of its series (one per class) has been scraped three times in that window. A series
is born at its first prediction of a class, and `rate` leaves out a series scraped once: until
then a share of both classes would read as all positive."""


def find_prometheus() -> str:
    found = shutil.which("prometheus") or shutil.which("/usr/bin/prometheus")
    if found is None:
        why = "the prometheus server is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"Prometheus is required in CI: {why}")
        pytest.skip(why)
    return found


@contextmanager
def running_prometheus(binary: str, folder: Path, target: str) -> Iterator[str]:
    """Prometheus scraping `target` (host:port) every second, until it has scraped it once."""
    folder.mkdir(parents=True)
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: mlops, static_configs: [{{targets: ['{target}']}}]}}\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    log = folder / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_S
        while not _scraped(url):
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited {process.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not scrape {target}: {log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _scraped(url: str) -> bool:
    try:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": 'up{job="mlops"} == 1'})
        return answer.status_code == 200 and bool(answer.json()["data"]["result"])
    except httpx.TransportError:
        return False


@dataclass
class Stack:
    client: Client
    server: Server
    prometheus: str


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> Iterator[Stack]:
    """`mlops serve` (gateway and controller) on SQLite, and Prometheus scraping it.

    `m:1` and `m:2` are logistic regressions; `m:3` predicts the positive class for every row.
    """
    import joblib
    from sklearn.dummy import DummyClassifier

    binary = find_prometheus()
    root = tmp_path_factory.mktemp("prometheus")
    x, y = training_data()
    always = root / "always-positive.joblib"
    joblib.dump(DummyClassifier(strategy="constant", constant=1).fit(x, y), always)
    store_url = f"sqlite:///{root / 'mlops.db'}"
    home = root / "home"
    with (
        Client(store_url, home=root / "home") as client,
        running_server(store_url, home) as server,
        running_prometheus(binary, root / "prom", server.url.removeprefix("http://")) as prom,
    ):
        client.register("m", model_files["joblib"], trust=True)
        client.register("m", model_files["joblib2"], trust=True)
        client.register("m", always, trust=True)
        yield Stack(client, server, prom)


def metric(name: str, query: str, address: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "prometheus": {"address": address, "query": query}, **settings}


def rollout(*metrics: dict[str, Any], pause: str = "6s", deadline: str = "30s") -> dict[str, Any]:
    return {
        "strategy": "canary",
        "steps": [{"set_weight": 50}, {"pause": {"duration": pause}}],
        "progress_deadline": deadline,
        # The built-in latency check is off: this machine's timing is not under test here.
        "analysis": {"latency_tolerance": None, "metrics": list(metrics)},
    }


@contextmanager
def traffic(server: Server, deployment: str, per_s: float = 40) -> Iterator[None]:
    """Requests of one row each to `deployment`, from a thread, while the block runs."""
    rows = training_data()[0][:50].tolist()
    stop = threading.Event()

    def send() -> None:
        with server.client() as http:
            i = 0
            while not stop.is_set():
                with suppress(httpx.TransportError):
                    http.post(f"/v1/models/{deployment}:predict", json={"instances": [rows[i]]})
                i = (i + 1) % len(rows)
                stop.wait(1 / per_s)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def roll_out(
    stack: Stack,
    deployment: str,
    version: int,
    spec: dict[str, Any],
    *,
    promote_when: Callable[[dict[str, Any]], bool] | None = None,
) -> list[Any]:
    """Deploy `m:1`, roll `m:<version>` out under traffic, and return the rollout's views seen
    (step, weights, verdict) until it ended. With `promote_when`, the step under way is promoted
    (as `mlops promote` does) once, at the first view that passes it."""
    stack.client.deploy(deployment, model="m:1")
    seen = []
    with traffic(stack.server, deployment):
        # force: the tests share the registry, and a rollback quarantines the candidate
        stack.client.deploy(deployment, model=f"m:{version}", rollout=spec, force=True)
        # A guard against a hang only: the progress deadline ends every timed step.
        deadline = time.monotonic() + 300
        while (view := stack.client.status(deployment)[0].rollout) is not None:
            seen.append(view)
            if promote_when is not None and promote_when(view):
                stack.client.promote(deployment)
                promote_when = None
            assert time.monotonic() < deadline, f"the rollout did not end: {seen[-1]}"
            time.sleep(0.2)
    return seen


def rollback_event(client: Client, deployment: str) -> Any:
    return next(e for e in client.events(deployment, limit=10) if e.action == "rollback")


def test_a_candidate_whose_metric_leaves_its_range_is_rolled_back(stack: Stack) -> None:
    share = metric("positive_share", CANDIDATE_SHARE, stack.prometheus, min=0.1, max=0.9)
    roll_out(stack, "always", 3, rollout({**share, "interval": "1s"}))
    assert stack.client.status("always")[0].revision == 1
    event = rollback_event(stack.client, "always")
    assert event.trigger == "analysis"
    assert event.reason == (
        "prometheus metric positive_share = 1 > max 0.9 (1 failure; failure_limit 0)"
    )
    assert stack.client.versions("m")[0].quarantined  # m:3


def in_range_reading(view: dict[str, Any]) -> bool:
    return any("positive_share =" in r and "within" in r for r in view["reasons"])


def test_a_healthy_candidate_with_its_metric_in_range_is_promoted(stack: Stack) -> None:
    share = metric("positive_share", CANDIDATE_SHARE, stack.prometheus, min=0.1, max=0.9)
    spec = rollout({**share, "interval": "1s"})
    # At 50 % the rollout waits until this test has seen the metric read in range (however long
    # the scrapes take); then a pause that passes only while the metric stays in range ends it.
    # A single timed pause could end at the very tick of the first reading, unseen.
    spec["steps"] = [{"set_weight": 50}, {"pause": {}}, {"pause": {"duration": "6s"}}]
    seen = roll_out(stack, "healthy", 2, spec, promote_when=in_range_reading)
    status = stack.client.status("healthy")[0]
    ended = next(e for e in stack.client.events("healthy", limit=5))
    why = (ended.action, ended.trigger, ended.reason, seen[-1] if seen else None)
    assert (status.revision, status.components["model"].version) == (2, 2), why
    assert ended.action == "promote", why
    in_range = [r for view in seen for r in view["reasons"] if "positive_share =" in r]
    assert in_range, seen[-1]
    assert "within [0.1, 0.9]" in in_range[-1]


def test_a_metric_without_data_holds_the_rollout_until_its_deadline(stack: Stack) -> None:
    labels = metric(
        "labels", 'sum(rate(mlops_feedback_total{deployment="{deployment}"}[10s]))',
        stack.prometheus, min=0.1, interval="1s",
    )  # fmt: skip
    seen = roll_out(stack, "unlabelled", 2, rollout(labels, pause="2s", deadline="8s"))
    assert stack.client.status("unlabelled")[0].revision == 1
    held = [v for v in seen if v["step"] == 2 and v["weight"] == 50]
    assert held, seen
    assert {v["outcome"] for v in held} == {"inconclusive"}
    assert "prometheus metric labels: no data (the query returned no series)" in held[-1]["reasons"]
    event = rollback_event(stack.client, "unlabelled")
    assert event.trigger == "deadline"
    assert "prometheus metric labels: no data" in " ".join(event.details["evidence"])


def test_an_unreachable_prometheus_fails_after_the_error_limit(stack: Stack) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    share = metric("positive_share", CANDIDATE_SHARE, nowhere, max=0.9)
    roll_out(stack, "blind", 2, rollout({**share, "interval": "1s", "error_limit": 2}))
    assert stack.client.status("blind")[0].revision == 1
    event = rollback_event(stack.client, "blind")
    assert event.trigger == "analysis"
    assert event.reason.startswith(
        f"prometheus metric positive_share: query failed (3 in a row; error_limit 2): "
        f"{nowhere}: ConnectError:"
    )


def test_an_invalid_metric_is_refused_at_deploy_before_anything_is_written(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    with Client(store_url, home=tmp_path) as client:
        client.register("m", model_files["skops"])
        client.register("m", model_files["onnx"])
        client.deploy("api", model="m:1")
        spec = rollout(metric("p", "up{revision='{revision}'}", "http://127.0.0.1:9", max=1))
        with pytest.raises(InvalidInput, match=r"analysis\.metrics\.0\.prometheus\.query"):
            client.deploy("api", model="m:2", rollout=spec)
        (tmp_path / "rollout.yaml").write_text(
            "analysis:\n  metrics:\n    - {name: p, prometheus: {address: 'http://x', query: up}}\n"
        )
        done = subprocess.run(
            [MLOPS, "deploy", "api", "--model", "m:2", "-f", str(tmp_path / "rollout.yaml")],
            env=server_env(store_url, tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 5, done.stderr
        assert "analysis.metrics.0: Value error, a metric needs min, max or both" in done.stderr
        assert [r.revision for r in client.history("api")] == [1]


def answer(status: int, body: str) -> Any:
    return reading_of(status, body.encode())


def test_readings_from_the_query_api() -> None:
    vector = '{"status":"success","data":{"resultType":"vector","result":%s}}'
    one = '[{"metric":{},"value":[1.5,"0.25"]}]'
    assert answer(200, vector % one) == 0.25
    assert answer(200, vector % "[]") == NoData()
    assert answer(200, '{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}')
    assert answer(200, vector % f"[{one[1:-1]},{one[1:-1]}]") == QueryError(
        "the query returned 2 series, not one: aggregate them (with sum(), max(), …)"
    )
    assert answer(400, '{"status":"error","errorType":"bad_data","error":"parse error"}') == (
        QueryError("HTTP 400: bad_data: parse error")
    )
    assert answer(502, "<html>bad gateway</html>") == QueryError(
        "HTTP 502: the answer is not Prometheus's JSON"
    )
    matrix = '{"status":"success","data":{"resultType":"matrix","result":[]}}'
    assert answer(200, matrix) == QueryError(
        "the query returned a matrix, not a scalar or one series"
    )


def test_the_provider_sends_the_query_and_reports_failures_as_readings() -> None:
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        if "boom" in str(request.url):
            raise httpx.ReadTimeout("timed out", request=request)
        scalar = {"resultType": "scalar", "result": [1, "3"]}
        return httpx.Response(200, json={"status": "success", "data": scalar})

    provider = PrometheusProvider(transport=httpx.MockTransport(handler))
    try:
        assert provider.query("http://prom:9090", 'sum(up{job="x"})') == 3.0
        assert asked[0].path == "/api/v1/query"
        assert asked[0].params["query"] == 'sum(up{job="x"})'
        assert provider.query("http://prom:9090", "boom") == QueryError(
            "http://prom:9090: ReadTimeout: timed out"
        )
    finally:
        provider.close()


def test_a_restarted_controller_does_not_query_before_the_interval(
    client: Client, model_files: dict[str, Path]
) -> None:
    from mlops.controller.judge import analysis_judge
    from mlops.controller.loop import Controller

    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["query"])
        scalar = {"resultType": "scalar", "result": [1, "0.5"]}
        return httpx.Response(200, json={"status": "success", "data": scalar})

    now = [1_800_000_000.0]

    def controller() -> Controller:
        provider = PrometheusProvider(transport=httpx.MockTransport(handler))
        return Controller(
            client._service, analysis_judge, clock=lambda: now[0], metrics=lambda: provider
        )

    client.register("m", model_files["skops"])
    client.register("m", model_files["onnx"])
    client.deploy("api", model="m:1")
    query = 'sum(x{deployment="{deployment}",revision="{candidate_revision}"}[{interval}])'
    share = metric("share", query, "http://prom:9090", max=0.9, interval="10s")
    client.deploy("api", model="m:2", rollout=rollout(share, pause="1m"))
    first = controller()
    first.tick()
    first.close()
    assert asked == ['sum(x{deployment="api",revision="2"}[10s])']
    now[0] += 5
    second = controller()  # a restart
    second.tick()
    assert len(asked) == 1
    now[0] += 5
    second.tick()
    second.close()
    assert len(asked) == 2
    rollout_view = client.status("api")[0].rollout
    assert rollout_view is not None
    assert "prometheus metric share = 0.5, within max 0.9" in rollout_view["reasons"]
