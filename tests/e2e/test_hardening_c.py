"""The gateway under hostile clients (issue 10, slice C), through a real `mlops serve`:
values a datatype cannot hold, unbounded shapes, odd lookup keys, odd query values, paths
with control characters, errors that must not show internals, slow and vanishing clients,
large bodies, and the cardinality of /metrics.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from mlops import Client
from tests.models import N_FEATURES, training_data
from tests.server import Server, eventually, running_server

ROW = training_data()[0][:1].tolist()


class ObjectModel:
    """Answers Python sets: outputs the gateway cannot encode (an unexpected failure)."""

    n_features_in_ = N_FEATURES

    def predict(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), dtype=object)
        for i in range(len(rows)):
            out[i] = {"/secret/path", i}
        return out


class WideRegression:
    """A regression whose outputs spread over many magnitudes: 10 ** (first feature)."""

    n_features_in_ = N_FEATURES

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows[:, 0] * 10 ** np.clip(rows[:, 1], -8, 8), dtype=np.float64)


def v2(shape: list[Any], datatype: str, data: list[Any], name: str = "input") -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


@dataclass
class Served:
    server: Server
    client: Client
    http: httpx.Client
    deployments: dict[str, str]

    def rows_predicted(self, deployment: str) -> int:
        route = self.http.get("/v1/gateway").json()["deployments"][deployment]
        return int(route["targets"]["1"]["rows"])

    def errors(self, deployment: str) -> dict[str, int]:
        found = self.http.get(f"/v1/measurements/{deployment}", params={"window": 600}).json()
        live = [m for m in found["revisions"] if m["role"] == "live"]
        return live[0]["errors"] if live else {}


def _features_db(folder: Path) -> Path:
    path = folder / "features.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, income REAL)")
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?)", [(i, 1000.0 + i) for i in range(20)]
        )
    conn.close()
    return path


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> Iterator[Served]:
    import joblib
    from sklearn.linear_model import LinearRegression

    root = tmp_path_factory.mktemp("hardening-c")
    home = root / "home"
    store = f"sqlite:///{root / 'mlops.db'}"
    files = {
        "object": root / "object.joblib",
        "wide": root / "wide.joblib",
        "income": root / "income.joblib",
        "lookup": root / "lookup.yaml",
    }
    joblib.dump(ObjectModel(), files["object"])
    joblib.dump(WideRegression(), files["wide"])
    x = np.arange(40, dtype=np.float64).reshape(-1, 2)
    joblib.dump(LinearRegression().fit(x, x[:, 0] * 2 + x[:, 1]), files["income"])
    files["lookup"].write_text(
        yaml.safe_dump(
            {
                "lookup": {
                    "resource": "features",
                    "table": "customers",
                    "key": "customer_id",
                    "columns": ["income"],
                    "inputs": ["customer_id", "amount"],
                }
            }
        )
    )
    deployments = {
        "clf": "clf",
        "onnx": "onnx32",
        "object": "objects",
        "wide": "wide",
        "lookup": "scoring",
    }
    home.mkdir()
    with Client(store, home=home) as client:
        client.register("clf", model_files["joblib"], trust=True)
        client.register("onnx", model_files["onnx"])
        client.register("obj", files["object"], trust=True)
        client.register("wide", files["wide"], trust=True)
        client.register("feats", files["lookup"])
        client.register("income", files["income"], trust=True)
        client.add_data("scoring", "features", sqlite=str(_features_db(root)))
        client.deploy("clf", model="clf:1")
        client.deploy("onnx32", model="onnx:1")
        client.deploy("objects", model="obj:1")
        client.deploy("wide", model="wide:1")
        client.deploy("scoring", model="income:1", components={"lookup": "feats:1"})
        with running_server(store, home) as server, server.client() as http:
            for name in deployments.values():
                eventually(
                    lambda name=name: http.get(f"/v2/models/{name}/ready").status_code,
                    lambda code: code == 200,
                    30,
                )
            yield Served(server, client, http, deployments)


def _refused(response: httpx.Response, *fragments: str, status: tuple[int, ...] = (400,)) -> None:
    assert response.status_code in status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    for fragment in fragments:
        assert fragment in error, (fragment, error)


# -- finding 2 and 11: decoding ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(v2([1, 6], "FP32", [1e300] + [0.5] * 5, "x"), "inputs[x]", id="fp32-1e300"),
        pytest.param(v2([1, 6], "FP16", [70000.0] + [0.5] * 5, "x"), "inputs[x]", id="fp16"),
        pytest.param(v2([1, 6], "INT8", [300, 1, 1, 1, 1, 1], "x"), "inputs[x]", id="int8"),
        pytest.param(v2([1, 6], "UINT8", [-1, 1, 1, 1, 1, 1], "x"), "inputs[x]", id="uint8"),
        pytest.param(v2([1, 6], "INT64", [2**63, 1, 1, 1, 1, 1], "x"), "inputs[x]", id="int64"),
    ],
)
def test_v2_values_the_datatype_cannot_hold_are_400(
    served: Served, body: dict[str, Any], fragment: str
) -> None:
    before = served.rows_predicted("clf")
    _refused(served.http.post("/v2/models/clf/infer", json=body), fragment)
    assert served.rows_predicted("clf") == before


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_values_the_models_float32_inputs_cannot_hold_are_400(
    served: Served, protocol: str
) -> None:
    """An ONNX model takes float32: 1e300 would reach it as infinity."""
    row = [1e300] + [0.5] * 5
    if protocol == "v1":
        response = served.http.post("/v1/models/onnx32:predict", json={"instances": [row]})
    else:
        response = served.http.post("/v2/models/onnx32/infer", json=v2([1, 6], "FP64", row))
    _refused(response, "float32")
    errors = eventually(lambda: served.errors("onnx32"), lambda e: e.get("rejected", 0) >= 1)
    assert errors["exception"] == 0
    assert errors["invalid_output"] == 0


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param([0, 2**62], id="zero-by-huge"),
        pytest.param([2**62, 2**62], id="huge-product"),
        pytest.param([0, 2**64], id="past-int64"),
        pytest.param([1] * 40, id="many-dimensions"),
        pytest.param([True, 6], id="bool-dimension"),
    ],
)
def test_v2_shapes_are_bounded_before_any_allocation(served: Served, shape: list[Any]) -> None:
    _refused(served.http.post("/v2/models/clf/infer", json=v2(shape, "FP64", [])), "inputs[input]")


def test_tensors_of_different_datatypes(served: Served) -> None:
    tensors = [
        {"name": f"f{i}", "shape": [1], "datatype": "FP64", "data": [ROW[0][i]]}
        for i in range(N_FEATURES)
    ]
    mixed = [*tensors[:-1], {"name": "f5", "shape": [1], "datatype": "INT64", "data": [1]}]
    ok = served.http.post("/v2/models/clf/infer", json={"inputs": mixed})
    assert ok.status_code == 200, ok.text
    text = [*tensors[:-1], {"name": "f5", "shape": [1], "datatype": "BYTES", "data": ["a"]}]
    _refused(served.http.post("/v2/models/clf/infer", json={"inputs": text}), "inputs[f5]")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param({"a": 1}, id="object"),
        pytest.param([1, 2], id="list"),
        pytest.param(2**64, id="2**64"),
        pytest.param(2**64 - 1, id="2**64-1"),
        pytest.param(True, id="bool"),
    ],
)
def test_a_lookup_key_that_cannot_be_a_key_is_the_clients_error(served: Served, key: Any) -> None:
    before = served.errors("scoring").get("rejected", 0)
    response = served.http.post(
        "/v1/models/scoring:predict", json={"instances": [{"customer_id": key, "amount": 1.0}]}
    )
    _refused(response, "customer_id", status=(400, 422))
    errors = eventually(
        lambda: served.errors("scoring"), lambda e: e.get("rejected", 0) >= before + 1
    )
    assert errors["exception"] == 0
    ok = served.http.post(
        "/v1/models/scoring:predict", json={"instances": [{"customer_id": 3, "amount": 1.0}]}
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("window", ["inf", "-inf", "nan", "-1", "0", "1e308", "x"])
def test_measurement_windows_must_be_finite_and_bounded(served: Served, window: str) -> None:
    _refused(served.http.get("/v1/measurements/clf", params={"window": window}), "window")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/clf/ready\n"),
        ("POST", "/v1/models/clf:predict\n"),
        ("GET", "/v2/models/clf\n"),
        ("GET", "/v1/measurements/clf\n"),
    ],
)
def test_a_name_ending_in_a_newline_does_not_match(served: Served, method: str, path: str) -> None:
    response = served.http.request(method, path.replace("\n", "%0A"), json={"instances": ROW})
    _refused(response, status=(400, 404))


def test_unknown_routes_and_methods_answer_json(served: Served) -> None:
    _refused(served.http.get("/nothing/here"), status=(404,))
    _refused(served.http.delete("/v2/health/live"), status=(405,))


# -- finding 14: errors without internals -----------------------------------------------------


def test_outputs_json_cannot_hold_are_an_invalid_output_not_a_crash(served: Served) -> None:
    """A model answering Python sets: the answer is a JSON 500 counted as `invalid_output`,
    showing nothing of the values, and the gateway's measurements keep flowing."""
    response = served.http.post("/v1/models/objects:predict", json={"instances": ROW})
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert "secret" not in response.json()["error"]
    errors = eventually(lambda: served.errors("objects"), lambda e: e.get("invalid_output") == 1)
    assert errors["exception"] == 0
    assert served.http.post("/v1/models/clf:predict", json={"instances": ROW}).status_code == 200
    eventually(
        lambda: served.http.get("/v1/measurements/clf", params={"window": 600}).json(),
        lambda m: any(r["requests"] for r in m["revisions"]),
    )


def test_an_unknown_lookup_key_is_echoed_bounded(served: Served) -> None:
    key = "k" * 5000
    response = served.http.post(
        "/v1/models/scoring:predict", json={"instances": [{"customer_id": key, "amount": 1.0}]}
    )
    _refused(response, "customer_id", status=(400, 422))
    assert len(response.json()["error"]) < 300


# -- finding 12: resources --------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hardening-c-guarded")
    home = root / "home"
    home.mkdir()
    store = f"sqlite:///{root / 'mlops.db'}"
    with Client(store, home=home) as client:
        client.register("clf", model_files["joblib"], trust=True)
        client.deploy("clf", model="clf:1")
    args = ("--body-timeout", "1", "--limit-concurrency", "24", "--log-level", "debug")
    with running_server(store, home, *args) as server:
        eventually(
            lambda: httpx.get(f"{server.url}/v2/models/clf/ready", timeout=5).status_code,
            lambda code: code == 200,
            30,
        )
        yield server


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server answered or closed the connection within `timeout` seconds, while
    the client keeps trickling a byte at a time."""
    deadline = time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"1")
        except OSError:
            return True
        try:
            if sock.recv(4096) is not None:
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_trickling_clients_are_cut_and_others_still_served(guarded: Server) -> None:
    body_head = (
        b"POST /v1/models/clf:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
    )
    header_head = b"POST /v1/models/clf:predict HTTP/1.1\r\nHost: x\r\nX-Slow: "
    socks = []
    for i in range(60):
        sock = _connect(guarded)
        sock.sendall(body_head if i % 2 else header_head)
        socks.append(sock)
    try:
        served_after = None
        with httpx.Client(base_url=guarded.url, timeout=10) as http:
            for attempt in range(100):
                try:
                    response = http.post("/v1/models/clf:predict", json={"instances": ROW})
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == 200:
                    served_after = attempt
                    break
                if response is not None:
                    _refused(response, status=(503,))
                time.sleep(0.1)
        assert served_after is not None, "a normal client was never served"
        with ThreadPoolExecutor(16) as pool:
            cut = list(pool.map(lambda s: _closed_by_server(s, 20.0), socks))
        assert all(cut), f"{cut.count(False)} trickling connections were never cut"
    finally:
        for sock in socks:
            sock.close()


def test_a_client_that_leaves_mid_body_leaves_no_traceback(guarded: Server) -> None:
    for _ in range(3):
        sock = _connect(guarded)
        sock.sendall(
            b"POST /v1/models/clf:predict HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"instances": '
        )
        sock.close()
    marker = "after-the-disconnects"
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        ok = http.post(
            "/v1/models/clf:predict", json={"instances": ROW}, headers={"x-request-id": marker}
        )
        assert ok.status_code == 200, ok.text
    log = eventually(
        lambda: guarded.log.read_text(), lambda text: "client disconnected" in text, timeout=15
    )
    assert "Traceback" not in log, log[-3000:]


def test_a_large_body_does_not_stall_other_requests(guarded: Server) -> None:
    big = b'{"instances": [' + b",".join([b"[]"] * (7 * 1024 * 1024 // 3)) + b"]}"
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=guarded.url, timeout=30) as http:
            while not done.is_set():
                started = time.perf_counter()
                http.get("/v2/health/live")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        with httpx.Client(base_url=guarded.url, timeout=60) as http:
            for _ in range(3):
                _refused(http.post("/v1/models/clf:predict", content=big), "lists and objects")
    finally:
        done.set()
        thread.join(30)
    assert latencies
    assert max(latencies) < 1.0, sorted(latencies)[-5:]


# -- finding 13: metric cardinality -----------------------------------------------------------


def test_metrics_series_stay_bounded_for_a_regression(served: Served) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    rng = np.random.default_rng(1)
    for _ in range(40):
        rows = rng.uniform(-9, 9, (25, N_FEATURES))
        response = served.http.post("/v1/models/wide:predict", json={"instances": rows.tolist()})
        assert response.status_code == 200, response.text
    text = served.http.get("/metrics").text
    values = {
        s.labels["value"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "mlops_predictions_total" and s.labels.get("deployment") == "wide"
    }
    assert 5 < len(values) <= 64, sorted(values)
    measured = eventually(
        lambda: served.http.get("/v1/measurements/wide", params={"window": 600}).json(),
        lambda m: sum(r["requests"] for r in m["revisions"]) >= 40,
    )
    keys = {k for r in measured["revisions"] for k in r["predictions"]}
    assert 5 < len(keys) <= 64, sorted(keys)


# -- lookup keys on PostgreSQL ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_lookup(
    tmp_path_factory: pytest.TempPathFactory, pg_database: str
) -> Iterator[tuple[Server, httpx.Client]]:
    import uuid

    import joblib
    import psycopg
    from sklearn.linear_model import LinearRegression

    from tests.conftest import pg_schema_url

    root = tmp_path_factory.mktemp("hardening-c-pg")
    home = root / "home"
    home.mkdir()
    url = pg_database.replace("postgresql+psycopg://", "postgresql://")
    schema = f"f_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".customers (customer_id bigint PRIMARY KEY, income float8)'
        )
        for i in range(20):
            conn.execute(f'INSERT INTO "{schema}".customers VALUES (%s, %s)', (i, 1000.0 + i))
    x = np.arange(40, dtype=np.float64).reshape(-1, 2)
    joblib.dump(LinearRegression().fit(x, x[:, 0] + x[:, 1]), root / "income.joblib")
    lookup = {
        "resource": "features",
        "table": "customers",
        "key": "customer_id",
        "columns": ["income"],
        "inputs": ["customer_id", "amount"],
    }
    (root / "lookup.yaml").write_text(yaml.safe_dump({"lookup": lookup}))
    store = pg_schema_url(pg_database)
    with Client(store, home=home) as client:
        client.register("feats", root / "lookup.yaml")
        client.register("income", root / "income.joblib", trust=True)
        client.add_data("scoring", "features", postgresql=f"{url}?schema={schema}")
        client.deploy("scoring", model="income:1", components={"lookup": "feats:1"})
        with running_server(store, home) as server, server.client() as http:
            eventually(
                lambda: http.get("/v2/models/scoring/ready").status_code, lambda c: c == 200, 30
            )
            yield server, http


def test_lookup_keys_of_the_wrong_kind_on_postgresql_are_the_clients_error(
    pg_lookup: tuple[Server, httpx.Client],
) -> None:
    _, http = pg_lookup

    def ask(key: Any) -> httpx.Response:
        body = {"instances": [{"customer_id": key, "amount": 1.0}]}
        return http.post("/v1/models/scoring:predict", json=body)

    for key in ("abc", "3", {"a": 1}, [1], 2**64, 2**40, True):
        _refused(ask(key), "customer_id", status=(400, 422))
    assert ask(3).status_code == 200

    def errors() -> dict[str, int]:
        found = http.get("/v1/measurements/scoring", params={"window": 600}).json()
        live = [m["errors"] for m in found["revisions"] if m["role"] == "live"]
        return live[0] if live else {"rejected": 0, "exception": 0}

    counted = eventually(errors, lambda e: e["rejected"] == 7)
    assert counted["exception"] == 0
