"""The gateway as its clients see it: a real `mlops serve` process, real models, both stores.

Most tests share one gateway per store backend (module scope) and give themselves their own
deployment, so a server starts a few times per run, not once per test. Tests that need other
`serve` options, or that break or stop the server, start their own.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest

from mlops import Client
from tests.conftest import pg_schema_url
from tests.models import N_FEATURES, SlowModel, training_data
from tests.server import MLOPS, Server, eventually, running_server, server_env

ROWS = training_data()[0][:8]
ROW = ROWS[:1].tolist()
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


LABEL_TOKENS: dict[str, str] = {}


@dataclass
class Gateway:
    """A running `mlops serve`, the store it serves, and a Python client on that store."""

    server: Server
    client: Client
    store_url: str
    home: Path
    files: dict[str, Path]
    http: httpx.Client

    def predict(
        self, deployment: str, rows: Any = ROW, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.http.post(
            f"/v1/models/{deployment}:predict", json={"instances": rows}, headers=headers
        )

    def label(self, deployment: str, **body: Any) -> httpx.Response:
        """POST a delayed label, with a token of the `feedback` scope (made once per store)."""
        if self.store_url not in LABEL_TOKENS:
            made = self.client._service.create_token(
                unique("labeller"), role=None, scopes=["feedback"]
            )
            LABEL_TOKENS[self.store_url] = made.secret
        headers = {"authorization": f"Bearer {LABEL_TOKENS[self.store_url]}"}
        return self.http.post(f"/v1/feedback/{deployment}", json=body, headers=headers)

    def register(self, file_key: str, name: str | None = None) -> str:
        """A new version of a model (by default a model of its own); returns MODEL:VERSION."""
        version = self.client.register(
            name or unique(file_key.replace("_", "-")), self.files[file_key], trust=True
        )
        return f"{version.model}:{version.version}"

    def status(self) -> dict[str, Any]:
        response = self.http.get("/v1/gateway")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def route(self, deployment: str) -> dict[str, Any] | None:
        return self.status()["deployments"].get(deployment)  # type: ignore[no-any-return]

    def wait_stable(self, deployment: str, revision: int, timeout: float = 15.0) -> None:
        eventually(
            lambda: self.route(deployment),
            lambda r: r is not None and r["stable_revision"] == revision,
            timeout,
        )

    def wait_weights(self, deployment: str, weights: dict[int, float]) -> None:
        want = {str(rev): float(w) for rev, w in weights.items()}
        eventually(
            lambda: self.route(deployment),
            lambda r: r is not None and r["split"]["weights"] == want,
        )

    def deploy(self, deployment: str, *refs: str) -> None:
        """Deploy each ref in turn (revisions 1, 2, …); wait until the gateway serves the last."""
        for ref in refs:
            result = self.client.deploy(deployment, model=ref)
        self.wait_stable(deployment, result.revision)

    def measured(self, deployment: str) -> dict[tuple[int, str], dict[str, Any]]:
        response = self.http.get(f"/v1/measurements/{deployment}", params={"window": 60})
        assert response.status_code == 200, response.text
        return {(m["revision"], m["role"]): m for m in response.json()["revisions"]}

    def wait_measured(
        self,
        deployment: str,
        check: Callable[[dict[tuple[int, str], dict[str, Any]]], bool],
        timeout: float = 10.0,
    ) -> dict[tuple[int, str], dict[str, Any]]:
        """Measurements are flushed about once a second: poll until `check` accepts them."""
        return eventually(lambda: self.measured(deployment), check, timeout)  # type: ignore[no-any-return]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MLOPS, *args],
            env=server_env(self.store_url, self.home),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done


@contextmanager
def start_gateway(
    store_url: str, root: Path, files: dict[str, Path], *serve_args: str
) -> Iterator[Gateway]:
    """`mlops serve *serve_args` on a new store with `lr:1` and `lr:2` registered."""
    home = root / "home"
    home.mkdir()
    with (
        Client(store_url, home=home) as client,
        running_server(store_url, home, *serve_args) as server,
        server.client(limits=httpx.Limits(max_connections=64)) as http,
    ):
        client.register("lr", files["joblib"], trust=True)  # lr:1
        client.register("lr", files["joblib2"], trust=True)  # lr:2
        yield Gateway(server, client, store_url, home, files, http)


def sqlite_url(root: Path) -> str:
    return f"sqlite:///{root / 'mlops.db'}"


@pytest.fixture(scope="module")
def sqlite_gateway(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("gateway-sqlite")
    with start_gateway(sqlite_url(root), root, model_files) as gw:
        yield gw


@pytest.fixture(scope="module")
def postgresql_gateway(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path], pg_database: str
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("gateway-postgresql")
    with start_gateway(pg_schema_url(pg_database), root, model_files) as gw:
        yield gw


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest) -> Gateway:
    """The shared gateway on each store backend (for behaviour that goes through the store)."""
    return request.getfixturevalue(f"{request.param}_gateway")  # type: ignore[no-any-return]


def concurrently(n: int, fn: Callable[[int], Any], workers: int = 32) -> list[Any]:
    """`fn(0) … fn(n-1)` from `workers` threads that start together."""
    barrier = threading.Barrier(min(n, workers))

    def run(i: int) -> Any:
        if i < workers:
            barrier.wait(timeout=10)
        return fn(i)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(n)))


# ---------------------------------------------------------------------------------------------
# protocol (SQLite only: nothing here depends on the store)


@pytest.fixture(scope="module")
def flavors(sqlite_gateway: Gateway) -> dict[str, str]:
    """One deployment per flavor (and a regression model), keyed by its model_files key."""
    out = {}
    for key in ("joblib", "skops", "onnx", "mlflow", "regression"):
        out[key] = unique(f"flavor-{key}")
        sqlite_gateway.deploy(out[key], sqlite_gateway.register(key))
    return out


@pytest.fixture(scope="module")
def expected(model_files: dict[str, Path]) -> dict[str, np.ndarray]:
    """What each flavor's model predicts for ROWS, computed here without the gateway."""
    import skops.io

    logreg = joblib.load(model_files["joblib"])
    untrusted = skops.io.get_untrusted_types(file=model_files["skops"])
    forest = skops.io.load(model_files["skops"], trusted=untrusted)
    return {
        "joblib": logreg.predict(ROWS),
        "onnx": logreg.predict(ROWS),
        "mlflow": logreg.predict(ROWS),
        "skops": forest.predict(ROWS),
        "regression": joblib.load(model_files["regression"]).predict(ROWS),
    }


FLAVOR_KEYS = ["joblib", "skops", "onnx", "mlflow", "regression"]


def test_health_metadata_and_unknown_deployments(
    sqlite_gateway: Gateway, flavors: dict[str, str]
) -> None:
    http = sqlite_gateway.http
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    meta = http.get("/v2").json()
    assert meta["name"] == "mlops"
    assert meta["version"]
    deployment = flavors["joblib"]
    assert deployment in http.get("/v1/models").json()["models"]
    assert http.get(f"/v2/models/{deployment}/ready").status_code == 200
    model = http.get(f"/v2/models/{deployment}").json()
    assert model["name"] == deployment
    assert model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, N_FEATURES]}]

    for method, path in [
        ("GET", "/v2/models/nope"),
        ("GET", "/v2/models/nope/ready"),
        ("POST", "/v2/models/nope/infer"),
        ("POST", "/v1/models/nope:predict"),
        ("GET", "/v1/measurements/nope"),
    ]:
        response = http.request(method, path, json={"instances": ROW})
        assert response.status_code == 404, (path, response.text)
        assert "nope" in response.json()["error"]


@pytest.mark.parametrize("key", FLAVOR_KEYS)
def test_v1_predict_serves_every_flavor(
    sqlite_gateway: Gateway, flavors: dict[str, str], expected: dict[str, np.ndarray], key: str
) -> None:
    deployment = flavors[key]
    response = sqlite_gateway.predict(deployment, ROWS.tolist())
    assert response.status_code == 200, response.text
    predictions = np.asarray(response.json()["predictions"])
    np.testing.assert_allclose(predictions, expected[key], rtol=1e-5)
    assert response.headers["x-model-version"].endswith(":1")
    assert response.headers["x-release-revision"] == "1"


@contextmanager
def triton_http(gw: Gateway) -> Iterator[Any]:
    """Triton's own HTTP client (`tritonclient.http`) on the gateway, closed after."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(
        url=gw.server.url.removeprefix("http://"), network_timeout=10
    )
    try:
        yield client
    finally:
        client.close()


@pytest.mark.parametrize("key", FLAVOR_KEYS)
def test_v2_with_tritonclient(
    sqlite_gateway: Gateway, flavors: dict[str, str], expected: dict[str, np.ndarray], key: str
) -> None:
    import tritonclient.http as triton

    deployment = flavors[key]
    with triton_http(sqlite_gateway) as client:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(deployment)
        meta = client.get_model_metadata(deployment)
        assert meta["name"] == deployment
        (spec,) = meta["inputs"]
        assert spec["shape"] == [-1, N_FEATURES]
        datatype = spec["datatype"]  # FP32 for the ONNX model, FP64 for the others
        assert datatype == ("FP32" if key == "onnx" else "FP64")

        tensor = triton.InferInput(spec["name"], list(ROWS.shape), datatype)
        tensor.set_data_from_numpy(
            ROWS.astype(np.float32 if datatype == "FP32" else np.float64), binary_data=False
        )
        result = client.infer(
            deployment,
            [tensor],
            outputs=[triton.InferRequestedOutput("predict", binary_data=False)],
            request_id="req-42",
        )
        np.testing.assert_allclose(result.as_numpy("predict"), expected[key], rtol=1e-5)
        response = result.get_response()
        assert response["model_name"] == deployment
        assert response["model_version"] == "1"
        assert response["id"] == "req-42"


@pytest.mark.parametrize("key", FLAVOR_KEYS)
def test_tritonclient_with_its_default_binary_tensor_data(
    sqlite_gateway: Gateway, flavors: dict[str, str], expected: dict[str, np.ndarray], key: str
) -> None:
    import tritonclient.http as triton

    deployment = flavors[key]
    with triton_http(sqlite_gateway) as client:
        (spec,) = client.get_model_metadata(deployment)["inputs"]
        # A pinned version has its own metadata and readiness, as the protocol's paths say.
        assert client.get_model_metadata(deployment, "1")["versions"] == ["1"]
        assert client.is_model_ready(deployment, "1")
        assert not client.is_model_ready(deployment, "7")
        rows = ROWS.astype(np.float32 if spec["datatype"] == "FP32" else np.float64)
        tensor = triton.InferInput(spec["name"], list(ROWS.shape), spec["datatype"])
        tensor.set_data_from_numpy(rows)  # binary, as the client sends by default
        # No outputs named: the client asks for every output in binary.
        result = client.infer(deployment, [tensor])
        np.testing.assert_allclose(result.as_numpy("predict"), expected[key], rtol=1e-5)
        assert result.get_output("predict")["parameters"]["binary_data_size"] > 0
        pinned = client.infer(deployment, [tensor], model_version="1")
        np.testing.assert_allclose(pinned.as_numpy("predict"), expected[key], rtol=1e-5)
        # Binary in, JSON out for the output asked so.
        as_json = client.infer(
            deployment,
            [tensor],
            outputs=[triton.InferRequestedOutput("predict", binary_data=False)],
        )
        np.testing.assert_allclose(as_json.as_numpy("predict"), expected[key], rtol=1e-5)
        assert "data" in as_json.get_output("predict")


@pytest.mark.parametrize("binary_data", [False, True])
def test_class_probabilities_are_an_output_of_their_own(
    sqlite_gateway: Gateway,
    flavors: dict[str, str],
    model_files: dict[str, Path],
    binary_data: bool,
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    deployment = flavors["joblib"]
    logreg = joblib.load(model_files["joblib"])
    with triton_http(sqlite_gateway) as client:
        outputs = client.get_model_metadata(deployment)["outputs"]
        assert {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]} in outputs
        tensor = triton.InferInput("input", list(ROWS.shape), "FP64")
        tensor.set_data_from_numpy(ROWS, binary_data=binary_data)
        asked = [
            triton.InferRequestedOutput("predict_proba", binary_data=binary_data),
            triton.InferRequestedOutput("label", binary_data=binary_data),
        ]
        result = client.infer(deployment, [tensor], outputs=asked)
        np.testing.assert_allclose(result.as_numpy("predict_proba"), logreg.predict_proba(ROWS))
        np.testing.assert_array_equal(result.as_numpy("label"), logreg.predict(ROWS))
        only = client.infer(deployment, [tensor], outputs=asked[:1])
        assert [o["name"] for o in only.get_response()["outputs"]] == ["predict_proba"]
        # A regression model has no classes: asked for probabilities, it refuses first.
        with pytest.raises(InferenceServerException, match="gives none") as refused:
            client.infer(flavors["regression"], [tensor], outputs=asked[:1])
        assert refused.value.status() == "400"
        two = [triton.InferRequestedOutput("a"), triton.InferRequestedOutput("b")]
        with pytest.raises(InferenceServerException, match="one name for the predictions"):
            client.infer(deployment, [tensor], outputs=two)


def test_bad_binary_tensor_data_is_refused_before_any_model(
    sqlite_gateway: Gateway, flavors: dict[str, str]
) -> None:
    deployment = flavors["joblib"]
    path = f"/v2/models/{deployment}/infer"
    rows = np.zeros((2, N_FEATURES))

    def send(header: dict[str, object], raw: bytes, length: int | None = None) -> httpx.Response:
        text = json.dumps(header).encode()
        size = str(len(text) if length is None else length)
        return sqlite_gateway.http.post(
            path, content=text + raw, headers={"Inference-Header-Content-Length": size}
        )

    def tensor(size: int, datatype: str = "FP64", shape: list[int] | None = None) -> object:
        return {
            "name": "input",
            "shape": shape or [2, N_FEATURES],
            "datatype": datatype,
            "parameters": {"binary_data_size": size},
        }

    raw = rows.tobytes()
    ok = send({"inputs": [tensor(len(raw))]}, raw)
    assert ok.status_code == 200, ok.text
    cases = [
        (send({"inputs": [tensor(len(raw))]}, raw, length=10**6), "past"),
        (send({"inputs": [tensor(len(raw))]}, raw, length=-1), "number of bytes"),
        (send({"inputs": [tensor(len(raw) + 8)]}, raw + b"\0" * 8), "needs 96"),
        (send({"inputs": [tensor(len(raw))]}, raw + b"\0"), "no input claims"),
        (send({"inputs": [tensor(len(raw) + 8)]}, raw), "runs past"),
        (send({"inputs": [tensor(len(raw), "FP128")]}, raw), "unknown datatype"),
        (send({"inputs": [tensor(len(raw), "FP64", [2, 2**31 - 1])]}, raw), "needs"),
        (send({"inputs": [tensor(12, "BYTES", [2**30, 2**30])]}, b"\0" * 12), "BYTES elements"),
        (send({"inputs": [{**tensor(len(raw)), "data": [1]}]}, raw), "both"),
    ]
    for answer, expected_text in cases:
        assert answer.status_code == 400, answer.text
        assert expected_text in answer.json()["error"], answer.text
    v1 = sqlite_gateway.http.post(
        f"/v1/models/{deployment}:predict",
        content=b'{"instances": [[0,0,0,0,0,0]]}',
        headers={"Inference-Header-Content-Length": "30"},
    )
    assert v1.status_code == 400
    assert "V2" in v1.json()["error"]


def test_tritonclient_gets_signature_errors_as_400(
    sqlite_gateway: Gateway, flavors: dict[str, str]
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    with triton_http(sqlite_gateway) as client:
        narrow = triton.InferInput("input", [2, 5], "FP64")
        narrow.set_data_from_numpy(np.zeros((2, 5)), binary_data=False)
        with pytest.raises(InferenceServerException, match="5 features, the model takes 6") as e:
            client.infer(flavors["joblib"], [narrow])
        assert e.value.status() == "400"


def test_every_response_names_request_version_and_revision(
    sqlite_gateway: Gateway, flavors: dict[str, str]
) -> None:
    deployment = flavors["joblib"]
    ids = set()
    for _ in range(5):
        response = sqlite_gateway.predict(deployment)
        assert response.status_code == 200
        ids.add(response.headers["x-request-id"])
        assert response.headers["x-model-version"].startswith("joblib-")
        assert response.headers["x-release-revision"] == "1"
    assert len(ids) == 5, "each request gets its own id"

    given = sqlite_gateway.predict(deployment, headers={"X-Request-Id": "client-chosen-1"})
    assert given.headers["x-request-id"] == "client-chosen-1"

    rejected = sqlite_gateway.predict(deployment, [[1.0, 2.0]])
    assert rejected.status_code == 400
    for header in ("x-request-id", "x-model-version", "x-release-revision"):
        assert rejected.headers[header], header


@pytest.fixture(scope="module")
def probe(sqlite_gateway: Gateway) -> str:
    """A deployment whose version no other deployment shares: its batcher counts model calls."""
    deployment = unique("probe")
    sqlite_gateway.deploy(deployment, sqlite_gateway.register("batch_size"))
    return deployment


def rows_predicted(gw: Gateway, deployment: str, revision: int = 1) -> int:
    route = gw.route(deployment)
    assert route is not None
    return int(route["targets"][str(revision)]["rows"])


def v2(shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}


BAD_REQUESTS = [
    pytest.param("v1", b"{not json", "not valid JSON", id="v1-not-json"),
    pytest.param(
        "v1", {"instances": [[1.0, 2.0, 3.0]]}, "3 features, the model takes 6", id="v1-wrong-width"
    ),
    pytest.param("v1", {"instances": [["a"] * 6]}, "expected rows of numbers", id="v1-text"),
    pytest.param("v1", {"instances": [[1.0] * 6, [1.0] * 5]}, "equal length", id="v1-ragged"),
    pytest.param("v1", {"rows": [[1.0] * 6]}, '"instances" must be a list', id="v1-no-instances"),
    pytest.param("v1", {"instances": []}, "no rows", id="v1-empty"),
    pytest.param("v1", [[1.0] * 6], "JSON object", id="v1-not-an-object"),
    pytest.param("v2", v2([1, 6], "FLOAT", [1.0] * 6), "unknown datatype", id="v2-bad-datatype"),
    pytest.param(
        "v2", v2([2, 6], "FP64", [1.0] * 6), "needs 12 values, data has 6", id="v2-shape-mismatch"
    ),
    pytest.param(
        "v2", v2([1, 5], "FP64", [1.0] * 5), "5 features, the model takes 6", id="v2-wrong-width"
    ),
    pytest.param("v2", v2([1, 6], "BYTES", ["a"] * 6), "BYTES data", id="v2-bytes-for-numbers"),
    pytest.param("v2", v2([1, 6], "FP64", ["a"] * 6), "data is not FP64", id="v2-text-as-fp64"),
    pytest.param("v2", {"inputs": []}, '{"inputs"', id="v2-no-inputs"),
]


@pytest.mark.parametrize(("protocol", "body", "message"), BAD_REQUESTS)
def test_bad_input_is_a_400_that_never_reaches_the_model(
    sqlite_gateway: Gateway, probe: str, protocol: str, body: Any, message: str
) -> None:
    before = rows_predicted(sqlite_gateway, probe)
    path = f"/v1/models/{probe}:predict" if protocol == "v1" else f"/v2/models/{probe}/infer"
    if isinstance(body, bytes):
        response = sqlite_gateway.http.post(path, content=body)
    else:
        response = sqlite_gateway.http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert rows_predicted(sqlite_gateway, probe) == before
    assert sqlite_gateway.predict(probe).status_code == 200  # the probe itself works
    assert rows_predicted(sqlite_gateway, probe) == before + 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"instances": [[None] + [0.5] * 5]}, id="v1-null"),
        pytest.param(v2([1, 6], "FP64", [None] + [0.5] * 5), id="v2-null"),
    ],
)
def test_null_where_a_number_is_expected_is_rejected(
    sqlite_gateway: Gateway, probe: str, body: dict[str, Any]
) -> None:
    """JSON null is not a number: it must be a 400, not a NaN fed to the model (a 500 that
    would count against the model as an exception)."""
    before = rows_predicted(sqlite_gateway, probe)
    path = f"/v1/models/{probe}:predict" if "instances" in body else f"/v2/models/{probe}/infer"
    response = sqlite_gateway.http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert rows_predicted(sqlite_gateway, probe) == before


def test_v2_data_must_fit_its_declared_datatype(sqlite_gateway: Gateway, probe: str) -> None:
    """0.5 is not an INT64: it must not be truncated to 0 silently."""
    before = rows_predicted(sqlite_gateway, probe)
    response = sqlite_gateway.http.post(
        f"/v2/models/{probe}/infer", json=v2([1, 6], "INT64", [0.5] * 6)
    )
    assert response.status_code == 400, response.text
    assert rows_predicted(sqlite_gateway, probe) == before


def test_v2_versioned_infer_serves_only_that_version(
    sqlite_gateway: Gateway, flavors: dict[str, str]
) -> None:
    deployment = flavors["joblib"]
    body = v2([1, 6], "FP64", ROW[0])
    served = sqlite_gateway.http.post(f"/v2/models/{deployment}/versions/1/infer", json=body)
    assert served.status_code == 200, served.text
    assert served.json()["model_version"] == "1"
    other = sqlite_gateway.http.post(f"/v2/models/{deployment}/versions/99/infer", json=body)
    assert other.status_code == 404, (
        f"asked for version 99, got {other.status_code} from version "
        f"{other.headers.get('x-model-version')}"
    )


def test_concurrent_rows_are_gathered_into_one_predict_call(sqlite_gateway: Gateway) -> None:
    deployment = unique("batching")
    sqlite_gateway.deploy(deployment, sqlite_gateway.register("batch_size"))
    responses = concurrently(32, lambda _: sqlite_gateway.predict(deployment))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    sizes = [r.json()["predictions"][0] for r in responses]
    assert max(sizes) > 1, sizes
    route = sqlite_gateway.route(deployment)
    assert route is not None
    target = route["targets"]["1"]
    assert target["rows"] == 32
    assert target["batches"] < 32


def test_prometheus_metrics(sqlite_gateway: Gateway) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    deployment = unique("metrics")
    sqlite_gateway.deploy(deployment, sqlite_gateway.register("joblib"))
    for _ in range(3):
        assert sqlite_gateway.predict(deployment).status_code == 200
    assert sqlite_gateway.predict(deployment, [[1.0]]).status_code == 400

    response = sqlite_gateway.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = [
        s
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.labels.get("deployment") == deployment
    ]

    def value(name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert value("mlops_requests_total", revision="1", role="live") == 4
    assert value("mlops_errors_total", kind="rejected") == 1
    # A refused request's time says nothing of the release: it is not in the histogram.
    assert value("mlops_request_duration_seconds_count") == 3
    assert value("mlops_predictions_total") == 3


# ---------------------------------------------------------------------------------------------
# errors and measurements (both stores)


def test_failing_and_nan_models_answer_500_and_count_by_kind(gateway: Gateway) -> None:
    failing, nan = unique("failing"), unique("nan")
    gateway.deploy(failing, gateway.register("failing"))
    gateway.deploy(nan, gateway.register("nan"))
    for i in range(2):
        response = gateway.predict(failing)
        assert response.status_code == 500
        # The cause goes to the operator's log (once per kind a while), never to the client.
        assert "boom" not in response.json()["error"]
        if i == 0:
            first = response.headers["x-request-id"]
            logged = eventually(gateway.server.log.read_text, lambda text, f=first: f in text)
            assert "boom" in logged
        response = gateway.predict(nan)
        assert response.status_code == 500
        assert "NaN" in response.json()["error"]

    def errors_are(kind: str) -> Callable[[dict[tuple[int, str], dict[str, Any]]], bool]:
        want = {k: 2 if k == kind else 0 for k in ("exception", "timeout", "invalid_output")}
        return lambda m: (
            (1, "live") in m and all(m[(1, "live")]["errors"][k] == n for k, n in want.items())
        )

    found = gateway.wait_measured(failing, errors_are("exception"))
    assert found[(1, "live")]["requests"] == 2
    assert found[(1, "live")]["error_rate"] == 1.0
    gateway.wait_measured(nan, errors_are("invalid_output"))


def test_rejected_requests_are_measured_as_rejected(gateway: Gateway) -> None:
    deployment = unique("rejects")
    gateway.deploy(deployment, gateway.register("batch_size"))
    assert gateway.predict(deployment, [[1.0, 2.0]]).status_code == 400
    assert gateway.http.post(f"/v1/models/{deployment}:predict", content=b"x").status_code == 400
    bad_v2 = v2([1, 6], "BYTES", ["a"] * 6)
    assert gateway.http.post(f"/v2/models/{deployment}/infer", json=bad_v2).status_code == 400
    assert gateway.predict(deployment).status_code == 200

    found = gateway.wait_measured(deployment, lambda m: m.get((1, "live"), {}).get("requests") == 4)
    assert found[(1, "live")]["errors"] == {
        "exception": 0,
        "timeout": 0,
        "invalid_output": 0,
        "rejected": 3,
    }
    assert rows_predicted(gateway, deployment) == 1


def test_measurements_and_delayed_labels(gateway: Gateway) -> None:
    deployment = unique("labels")
    gateway.deploy(deployment, "lr:1")
    ids, predictions = [], []
    for row in ROWS.tolist():
        response = gateway.predict(deployment, [row])
        assert response.status_code == 200
        ids.append(response.headers["x-request-id"])
        predictions.append(response.json()["predictions"][0])
    for i, (request_id, prediction) in enumerate(zip(ids, predictions, strict=True)):
        label = prediction if i < 5 else 1 - prediction  # 5 right, 3 wrong
        response = gateway.label(deployment, request_id=request_id, label=label)
        assert response.status_code == 202, response.text
    for bad in ({"label": 1}, {"request_id": ids[0]}, {"request_id": 7, "label": 1}):
        response = gateway.label(deployment, **bad)
        assert response.status_code == 400, bad
    token = LABEL_TOKENS[gateway.store_url]
    raw = gateway.http.post(
        f"/v1/feedback/{deployment}", content=b"[", headers={"authorization": f"Bearer {token}"}
    )
    assert raw.status_code == 400

    found = gateway.wait_measured(
        deployment,
        lambda m: m.get((1, "live"), {}).get("labelled") == 8 and m[(1, "live")]["requests"] == 8,
    )
    live = found[(1, "live")]
    assert live["errors"] == {"exception": 0, "timeout": 0, "invalid_output": 0, "rejected": 0}
    assert live["error_rate"] == 0.0
    assert live["correct"] == 5
    assert live["accuracy"] == pytest.approx(5 / 8)
    assert live["predictions"] == {str(k): n for k, n in Counter(predictions).items()}
    latency = live["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] < 5000
    assert sum(live["latency_bins"].values()) == 8
    assert list(found) == [(1, "live")]
    for window in ("abc", "0"):
        response = gateway.http.get(f"/v1/measurements/{deployment}", params={"window": window})
        assert response.status_code == 400, window


def test_a_reused_request_id_does_not_stop_measurements(
    store_url: str, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    """Clients choose X-Request-Id (retries reuse it): a second request with the same id must
    not make every later flush of measurements fail."""
    with start_gateway(store_url, tmp_path, model_files) as gw:
        gw.deploy("api", "lr:1")
        for _ in range(2):
            response = gw.predict("api", headers={"X-Request-Id": "retry-of-1"})
            assert response.status_code == 200
        gw.deploy("other", "lr:2")
        for _ in range(3):
            assert gw.predict("other").status_code == 200
        gw.wait_measured("other", lambda m: m.get((1, "live"), {}).get("requests") == 3, 5)
        gw.wait_measured("api", lambda m: m.get((1, "live"), {}).get("requests") == 2, 5)


# ---------------------------------------------------------------------------------------------
# routing (both stores)


def test_routing_key_sticks_and_splits_evenly(gateway: Gateway) -> None:
    deployment = unique("split")
    gateway.deploy(deployment, "lr:1", "lr:2")
    gateway.client.set_traffic(deployment, {1: 50, 2: 50})
    gateway.wait_weights(deployment, {1: 50, 2: 50})

    def send(key: str | None) -> tuple[int, str, str]:
        headers = {"X-Routing-Key": key} if key is not None else None
        response = gateway.predict(deployment, headers=headers)
        return (
            response.status_code,
            response.headers["x-release-revision"],
            response.headers["x-model-version"],
        )

    keys = [f"user-{i}" for i in range(2000)]
    first = concurrently(len(keys), lambda i: send(keys[i]), workers=16)
    assert {code for code, _, _ in first} == {200}
    assert {(rev, version) for _, rev, version in first} == {("1", "lr:1"), ("2", "lr:2")}
    share = Counter(rev for _, rev, _ in first)["1"] / len(keys)
    assert 0.45 <= share <= 0.55, share  # 4.5 standard deviations either side

    again = concurrently(300, lambda i: send(keys[i]), workers=16)
    assert [rev for _, rev, _ in again] == [rev for _, rev, _ in first[:300]]

    keyless = concurrently(100, lambda _: send(None), workers=16)
    assert {rev for _, rev, _ in keyless} == {"1", "2"}


def test_shadow_copies_are_measured_and_never_answer(
    gateway: Gateway, model_files: dict[str, Path]
) -> None:
    deployment = unique("shadow")
    gateway.deploy(deployment, "lr:1", "lr:2", gateway.register("failing"))  # revisions 1-3
    gateway.cli("traffic", deployment, "--weight", "1=50", "--weight", "2=50", "--shadow", "3=100")
    eventually(
        lambda: gateway.route(deployment),
        lambda r: r is not None and r["split"]["shadows"] == {"3": 100.0},
    )
    models = {
        "lr:1": joblib.load(model_files["joblib"]),
        "lr:2": joblib.load(model_files["joblib2"]),
    }
    n = 0
    for _ in range(2):
        for row in ROWS.tolist():
            response = gateway.predict(deployment, [row])
            n += 1
            assert response.status_code == 200, response.text  # the failing shadow is unseen
            assert response.headers["x-release-revision"] in {"1", "2"}
            model = models[response.headers["x-model-version"]]
            assert response.json()["predictions"] == model.predict([row]).tolist()

    found = gateway.wait_measured(
        deployment, lambda m: m.get((3, "shadow"), {}).get("requests") == n
    )
    assert found[(3, "shadow")]["errors"]["exception"] == n
    live = [m for (rev, role), m in found.items() if role == "live"]
    assert sum(m["requests"] for m in live) == n
    assert all(m["error_rate"] == 0 for m in live)
    assert (3, "live") not in found


def test_a_version_is_loaded_once_for_every_release_that_pins_it(gateway: Gateway) -> None:
    deployment = unique("shared")
    batch_size = gateway.register("batch_size")
    gateway.deploy(deployment, batch_size, "lr:1")
    gateway.client.rollback(deployment, revision=1)  # revision 3 pins batch_size again
    gateway.client.set_traffic(deployment, {1: 50, 3: 50})
    gateway.wait_weights(deployment, {1: 50, 3: 50})

    responses = [gateway.predict(deployment) for _ in range(30)]
    assert {r.status_code for r in responses} == {200}
    assert {r.headers["x-release-revision"] for r in responses} == {"1", "3"}
    status = gateway.status()
    targets = status["deployments"][deployment]["targets"]
    assert targets["1"]["components"] == targets["3"]["components"] == f"model={batch_size}"
    # one loaded model and one batcher serve both revisions: each sees all 30 rows
    assert targets["1"]["rows"] == targets["3"]["rows"] == 30
    assert status["loaded_versions"].count(batch_size) == 1


def test_a_cli_rollback_reaches_the_serving_gateway_within_seconds(gateway: Gateway) -> None:
    deployment = unique("rollback")
    gateway.deploy(deployment, "lr:1", "lr:2")
    assert gateway.predict(deployment).headers["x-model-version"] == "lr:2"

    gateway.cli("rollback", deployment, "--reason", "gateway test")
    written = time.monotonic()
    response = eventually(
        lambda: gateway.predict(deployment),
        lambda r: r.headers["x-release-revision"] == "3",
        timeout=10,
    )
    elapsed = time.monotonic() - written
    assert response.headers["x-model-version"] == "lr:1"
    assert elapsed < 2.0, f"the gateway served the rollback {elapsed:.2f} s after it was written"


def test_no_request_fails_across_ten_switches(gateway: Gateway) -> None:
    deployment = unique("switch")
    gateway.deploy(deployment, "lr:1", "lr:2")
    stop = threading.Event()
    served: list[tuple[str, str]] = []
    failures: list[str] = []

    def traffic() -> None:
        with gateway.server.client() as http:
            while not stop.is_set():
                try:
                    r = http.post(f"/v1/models/{deployment}:predict", json={"instances": ROW})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    served.append((r.headers["x-release-revision"], r.headers["x-model-version"]))

    senders = [threading.Thread(target=traffic) for _ in range(2)]
    for sender in senders:
        sender.start()
    delays = []  # from each write to the first response from the new revision
    try:
        for _ in range(10):
            revision = str(gateway.client.rollback(deployment).revision)  # lr:1, lr:2, lr:1 …
            written = time.monotonic()
            eventually(
                lambda: gateway.predict(deployment),
                lambda r, want=revision: r.headers["x-release-revision"] == want,
                timeout=5,
            )
            delays.append(time.monotonic() - written)
            time.sleep(0.05)
    finally:
        stop.set()
        for sender in senders:
            sender.join(10)
    assert failures == []
    assert max(delays) < 2.0, delays  # the change feed, not the 5 s safety re-read
    assert len(served) > 100
    revisions = {int(rev) for rev, _ in served}
    assert len(revisions) >= 8, sorted(revisions)
    # revision 2 and every even one restore lr:2; odd ones restore lr:1
    assert all(version == ("lr:2" if int(rev) % 2 == 0 else "lr:1") for rev, version in served)


# ---------------------------------------------------------------------------------------------
# limits (SQLite: these are the gateway's own)


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, model_files: dict[str, Path]
) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("gateway-limits")
    args = ("--timeout", "0.5", "--max-body-mb", "0.001", "--max-rows", "4", "--queue-rows", "2")
    with start_gateway(sqlite_url(root), root, model_files, *args) as gw:
        gw.deploy("ok", "lr:1")
        slow = gw.register("slow")
        gw.deploy("hang", slow)
        gw.deploy("hang-queue", slow)  # the same version: one model, one batcher, one queue
        yield gw
        gw.server.stop(signal.SIGKILL)  # a graceful stop would wait for the hanging model


def test_a_body_over_the_limit_is_413(limited: Gateway) -> None:
    big = {"instances": [[0.123456789] * 6] * 40}
    response = limited.http.post("/v1/models/ok:predict", json=big)
    assert response.status_code == 413, response.text
    assert "larger than 1048 bytes" in response.json()["error"]
    assert response.headers["x-request-id"]
    chunked = limited.http.post(
        "/v1/models/ok:predict", content=iter([json.dumps(big).encode()])
    )  # no Content-Length: the limit holds while reading
    assert chunked.status_code == 413, chunked.text
    assert limited.predict("ok").status_code == 200


def test_more_rows_than_max_rows_is_400(limited: Gateway) -> None:
    response = limited.predict("ok", ROWS[:5].tolist())
    assert response.status_code == 400
    assert "5 rows, more than the limit of 4" in response.json()["error"]
    response = limited.predict("ok", ROWS[:4].tolist())
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 4


def test_a_hanging_model_times_out_with_504(limited: Gateway) -> None:
    started = time.monotonic()
    response = limited.predict("hang")
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert "within 0.5 s" in response.json()["error"]
    assert 0.4 < elapsed < 3.0
    assert response.headers["x-model-version"].startswith("slow-")
    found = limited.wait_measured("hang", lambda m: (1, "live") in m)
    assert found[(1, "live")]["errors"]["timeout"] == found[(1, "live")]["requests"] == 1


def test_a_full_queue_answers_503_with_retry_after(limited: Gateway) -> None:
    responses = concurrently(6, lambda _: limited.predict("hang-queue"))
    codes = Counter(r.status_code for r in responses)
    assert set(codes) <= {503, 504}, codes
    assert codes[503] >= 2, codes  # the queue holds 2 rows: at most 1 running + 2 queued
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
            assert "overloaded" in response.json()["error"]
    assert limited.predict("ok").status_code == 200  # other pipelines are not affected


# ---------------------------------------------------------------------------------------------
# servers of their own


def test_hanging_models_do_not_starve_other_deployments(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    with start_gateway(sqlite_url(tmp_path), tmp_path, model_files, "--timeout", "0.5") as gw:
        try:
            gw.deploy("ok", "lr:1")
            hanging = [unique("hang") for _ in range(2)]
            for deployment in hanging:
                gw.deploy(deployment, gw.register("slow"))
            codes = concurrently(2, lambda i: gw.predict(hanging[i]).status_code)
            assert codes == [504, 504]
            response = gw.predict("ok")
            assert response.status_code == 200, response.text
        finally:
            gw.server.stop(signal.SIGKILL)


def test_batch_max_rows_1_sends_every_request_alone(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    with start_gateway(sqlite_url(tmp_path), tmp_path, model_files, "--batch-max-rows", "1") as gw:
        gw.deploy("api", gw.register("batch_size"))
        responses = concurrently(32, lambda _: gw.predict("api"))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        assert {r.json()["predictions"][0] for r in responses} == {1.0}
        route = gw.route("api")
        assert route is not None
        assert route["targets"]["1"]["batches"] == route["targets"]["1"]["rows"] == 32


def test_sigterm_lets_an_in_flight_request_finish(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    slow = tmp_path / "slow-1.5s.joblib"
    joblib.dump(SlowModel(1.5), slow)
    files = {**model_files, "slow_1_5": slow}
    with start_gateway(sqlite_url(tmp_path), tmp_path, files, "--timeout", "10") as gw:
        gw.deploy("api", gw.register("slow_1_5"))
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            with gw.server.client() as http:
                result["response"] = http.post("/v1/models/api:predict", json={"instances": ROW})

        thread = threading.Thread(target=call)
        thread.start()
        eventually(lambda: gw.route("api"), lambda r: r["targets"]["1"]["batches"] == 1)
        gw.http.close()
        started = time.monotonic()
        code = gw.server.stop()  # SIGTERM while the model is still sleeping
        waited = time.monotonic() - started
        thread.join(15)
        assert "response" in result, "the in-flight request got no answer"
        assert result["response"].status_code == 200, result["response"].text
        assert result["response"].json() == {"predictions": [1]}
        assert code in (0, -signal.SIGTERM), gw.server.log.read_text()  # uvicorn re-raises it
        assert waited > 0.3
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{gw.server.url}/v1/models/api:predict", json={"instances": ROW})
        (measured,) = gw.client.measurements("api")  # flushed on the way out, not lost
        assert (measured.requests, measured.error_count) == (1, 0)
