"""Versions served by existing model servers: a real MLServer 1.7.1 (its own venv, started
here on loopback) over V2 REST and gRPC, and mlops's own gateway as a V2 server behind TLS and
a predict token. Registered from the server's metadata, served through `mlops serve`, rolled
back by the analysis when the server times out, rolled back by hand to a local version; and
refused, before any request leaves, for a server the operator did not list."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlops import Client
from mlops.core.refs import ComponentRef
from mlops.errors import InvalidInput, RemoteFailed
from mlops.runtime.version import LoadedVersion
from tests.mlserver import MLServer, running_mlserver
from tests.models import training_data
from tests.server import SETTLE_S, Traffic, eventually, free_port, running_server

X, Y = training_data()
ROWS = X[:16]
CANARY = {
    "strategy": "canary",
    "steps": [{"set_weight": 50}, {"pause": {"duration": "10m"}}],
    "progress_deadline": "20m",
    "analysis": {"latency_tolerance": None},
}


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MLServer, Any]]:
    """MLServer serving a logistic regression trained on flipped labels (so its answers differ
    from the local model's) as `flipped`, and the same model as `stalls`, whose adaptive
    batching holds every request for 5 s."""
    folder = tmp_path_factory.mktemp("mlserver")
    flipped = LogisticRegression(max_iter=300).fit(X, 1 - Y)
    joblib.dump(flipped, folder / "flipped.joblib")
    model = {
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(folder / "flipped.joblib"), "version": "v1"},
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, X.shape[1]]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1, 1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
        ],
    }
    stalls = {**model, "max_batch_size": 256, "max_batch_time": 5.0}
    with running_mlserver(folder / "server", {"flipped": model, "stalls": stalls}) as server:
        yield server, flipped


@pytest.fixture
def allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_REMOTE_HOSTS", "127.0.0.1")


def remote_file(folder: Path, name: str, **remote: Any) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps({"remote": remote}))
    return path


def url_of(server: MLServer, transport: str) -> str:
    return server.http if transport == "rest" else f"grpc://{server.grpc}"


def v2_predict(url: str, rows: np.ndarray) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64"}]}
    body["inputs"][0]["data"] = rows.reshape(-1).tolist()
    return httpx.post(f"{url}/v2/models/api/infer", json=body, timeout=30)


def predictions(answer: httpx.Response) -> list[Any]:
    assert answer.status_code == 200, answer.text
    return answer.json()["outputs"][0]["data"]  # type: ignore[no-any-return]


@pytest.mark.usefixtures("allowed")
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_remote_version_is_registered_from_its_metadata_and_served_through_the_gateway(
    mlserver: tuple[MLServer, Any], transport: str, tmp_path: Path
) -> None:
    server, flipped = mlserver
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    spec = remote_file(tmp_path, "flipped", url=url_of(server, transport), model="flipped")
    with Client(store_url, home=home) as client:
        version = client.register("m", spec)
        assert version.flavor == "remote"
        assert version.signature["inputs"] == [
            {"name": "input-0", "dtype": "float64", "shape": [-1, X.shape[1]]}
        ]
        assert version.signature["output_kind"] == "classification"
        client.deploy("api", model="m:1")
    with running_server(store_url, home) as gateway:
        assert predictions(v2_predict(gateway.url, ROWS)) == flipped.predict(ROWS).tolist()


def feed(url: str) -> Traffic:
    """One-row V2 predictions to the deployment `api` on four connections, until stopped."""
    body = {"inputs": [{"name": "x", "shape": [1, X.shape[1]], "datatype": "FP64"}]}
    body["inputs"][0]["data"] = ROWS[0].tolist()
    return Traffic(url, "/v2/models/api/infer", [body], connections=4)


def statuses(traffic: Traffic) -> Counter[int]:
    return Counter(status for status, _ in traffic.since(0).elements())


def rolled_back(client: Client) -> Any:
    """The deployment's rollback event, once its rollout has ended rolled back."""
    eventually(
        lambda: client.status("api")[0],
        lambda s: s.rollout is None and s.revision == 1,
        SETTLE_S * 3,
    )
    assert client.status("api")[0].components["model"].version == 1
    return next(e for e in client.events("api", limit=10) if e.action == "rollback")


@pytest.mark.usefixtures("allowed")
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_remote_canary_whose_server_dies_is_rolled_back_by_its_analysis(
    transport: str, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    model = {
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model_files["joblib2"])},
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, X.shape[1]]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
    }
    with (
        running_mlserver(tmp_path / "mlserver", {"m2": model}) as server,
        Client(store_url, home=home) as client,
    ):
        client.register("m", model_files["joblib"], trust=True)
        client.register("m", remote_file(tmp_path, "m2", url=url_of(server, transport), model="m2"))
        client.deploy("api", model="m:1")
        with running_server(store_url, home) as gateway, feed(gateway.url) as traffic:
            client.deploy("api", model="m:2", rollout=CANARY)
            # Half the traffic reaches the remote version, and it answers...
            eventually(lambda: client.status("api")[0], lambda s: s.rollout is not None, SETTLE_S)
            eventually(lambda: traffic.since(0)[(200, 2)], lambda n: n >= 20, SETTLE_S)
            server.stop()  # ...until its server goes away.
            event = rolled_back(client)
        assert event.trigger == "analysis"
        seen = statuses(traffic)
        assert seen[502] > 0  # its failures were answered, and counted
        assert set(seen) <= {200, 502}


@pytest.mark.usefixtures("allowed")
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_remote_candidate_that_does_not_answer_in_time_gets_no_traffic(
    mlserver: tuple[MLServer, Any], transport: str, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    server, _ = mlserver
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    slow = remote_file(
        tmp_path, "stalls", url=url_of(server, transport), model="stalls", timeout_s=0.2
    )
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.register("m", slow)
        client.deploy("api", model="m:1")
        with running_server(store_url, home) as gateway, feed(gateway.url) as traffic:
            eventually(lambda: len(traffic.seen), lambda n: n >= 5, SETTLE_S)
            client.deploy("api", model="m:2", rollout=CANARY)
            event = rolled_back(client)
        # The controller's readiness check timed out at the server before any traffic moved.
        assert (event.trigger, "RemoteTimedOut" in event.reason) == ("health", True), event.reason
        assert set(statuses(traffic)) == {200}


@pytest.mark.usefixtures("allowed")
def test_a_rollback_from_a_remote_version_to_a_local_one(
    mlserver: tuple[MLServer, Any], tmp_path: Path, model_files: dict[str, Path]
) -> None:
    server, flipped = mlserver
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    local = joblib.load(model_files["joblib"])
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.register("m", remote_file(tmp_path, "r", url=server.http, model="flipped"))
        client.deploy("api", model="m:1")
        client.deploy("api", model="m:2")
        with running_server(store_url, home) as gateway:
            assert predictions(v2_predict(gateway.url, ROWS)) == flipped.predict(ROWS).tolist()
            client.rollback("api", version=1)
            eventually(
                lambda: predictions(v2_predict(gateway.url, ROWS)),
                lambda answers: answers == local.predict(ROWS).tolist(),
                SETTLE_S,
            )
        assert client.status("api")[0].components["model"].version == 1


@contextlib.contextmanager
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A port that records every connection made to it (and answers nothing)."""
    seen: list[bytes] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            seen.append(b"connected")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_only_servers_the_operator_lists_are_ever_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with listener() as (port, seen), Client(f"sqlite:///{tmp_path / 'db'}", home=tmp_path) as c:
        spec = remote_file(tmp_path, "r", url=f"http://127.0.0.1:{port}", model="m")
        monkeypatch.delenv("MLOPS_REMOTE_HOSTS", raising=False)
        with pytest.raises(InvalidInput, match="MLOPS_REMOTE_HOSTS"):
            c.register("m", spec)
        monkeypatch.setenv(
            "MLOPS_REMOTE_HOSTS", f"127.0.0.2,127.0.0.1:{port + 1 if port < 65535 else 1}"
        )
        with pytest.raises(InvalidInput, match="not among the model servers"):
            c.register("m", spec)
        monkeypatch.setenv("MLOPS_REMOTE_HOSTS", "localhost")  # a name, not the address
        with pytest.raises(InvalidInput, match="not among the model servers"):
            c.register("m", spec)
        assert c.models() == []
        assert seen == []
        monkeypatch.setenv("MLOPS_REMOTE_HOSTS", f"127.0.0.1:{port}")
        with pytest.raises(RemoteFailed):  # listed: asked, and it never answers
            c.register(
                "m",
                remote_file(
                    tmp_path,
                    "r2",
                    url=f"http://127.0.0.1:{port}",
                    model="m",
                    timeout_s=0.5,
                    retries=0,
                ),
            )
        assert seen
        assert c.models() == []


class Flaky(http.server.BaseHTTPRequestHandler):
    """A V2 server whose inference answers 503 to every other request."""

    calls: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        Flaky.calls.append(self.path)
        if len(Flaky.calls) % 2:
            self._answer(503, {"error": "warming up"})
        else:
            data = {"name": "predict", "shape": [1], "datatype": "INT64", "data": [7]}
            self._answer(200, {"model_name": "m", "outputs": [data]})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_remote_that_is_unavailable_is_tried_again_and_counted_when_it_stays_so() -> None:
    from mlops.core.remote import parse_remote
    from mlops.core.signature import Signature, TensorSpec
    from mlops.flavors.remote import RemoteFlavor, RemoteModel
    from mlops.flavors.v2client import transport

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signature = Signature(inputs=(TensorSpec("x", "float64", (-1, 2)),))
    rows = np.array([[1.0, 2.0]])
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        for retries, calls in ((1, 2), (0, 1)):
            Flaky.calls.clear()
            spec = parse_remote({"remote": {"url": url, "model": "m", "retries": retries}}, "t")
            model = RemoteModel(spec, transport(spec, None))
            if retries:
                out = RemoteFlavor().predict(model, rows, "predict", signature, "m:1")
                assert out.tolist() == [7]
            else:
                with pytest.raises(RemoteFailed, match="HTTP 503 warming up"):
                    RemoteFlavor().predict(model, rows, "predict", signature, "m:1")
            assert Flaky.calls == ["/v2/models/m/infer"] * calls
        closed = free_port()
        spec = parse_remote(
            {"remote": {"url": f"http://127.0.0.1:{closed}", "model": "m", "retries": 2}}, "t"
        )
        with pytest.raises(RemoteFailed, match="ConnectError"):
            RemoteFlavor().predict(
                RemoteModel(spec, transport(spec, None)), rows, "predict", signature, "m:1"
            )
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_remote_behind_tls_and_a_token(
    transport: str, tmp_path: Path, model_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlops's own gateway as the V2 server: TLS with a CA of the test's own, predict tokens."""
    from tests.tls import make_tls

    files = make_tls(tmp_path)
    served_url = f"sqlite:///{tmp_path / 'served.db'}"
    with Client(served_url, home=tmp_path / "served") as served:
        served.register("m", model_files["joblib"], trust=True)
        served.deploy("api", model="m:1")
        token = served._service.create_token("app", role=None, scopes=["predict"]).secret
    grpc_port = free_port()
    tls = ("--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]))
    args = ("--grpc-port", str(grpc_port), "--predict-token", *tls)
    local = joblib.load(model_files["joblib"])
    monkeypatch.setenv("MLOPS_REMOTE_HOSTS", "127.0.0.1")
    with running_server(served_url, tmp_path / "served", *args) as gateway:
        url = gateway.url if transport == "rest" else f"grpcs://127.0.0.1:{grpc_port}"
        remote = {"url": url, "model": "api", "ca_file": str(files["ca"])}
        with Client(f"sqlite:///{tmp_path / 'mlops.db'}", home=tmp_path / "home") as client:
            sample = model_files["sample_json"]  # registering predicts on its rows
            with pytest.raises(RemoteFailed, match=r"401|UNAUTHENTICATED"):
                client.register("m", remote_file(tmp_path, "no-token", **remote), sample=sample)
            monkeypatch.setenv("MLOPS_REMOTE_TOKEN_SERVED", token)
            with_token = remote_file(
                tmp_path, "token", **remote, token_env="MLOPS_REMOTE_TOKEN_SERVED"
            )
            client.register("m", with_token, sample=sample)
            service = client._service
            loaded = LoadedVersion(
                service.version(ComponentRef("m", 1)), service.load(ComponentRef("m", 1))
            )
            assert loaded(ROWS).tolist() == local.predict(ROWS).tolist()
            monkeypatch.delenv("MLOPS_REMOTE_TOKEN_SERVED")
            with pytest.raises(InvalidInput, match="MLOPS_REMOTE_TOKEN_SERVED, which is not set"):
                service.load(ComponentRef("m", 1))
        untrusted = remote_file(tmp_path, "no-ca", url=url, model="api")
        other = Client(f"sqlite:///{tmp_path / 'db2'}", home=tmp_path / "h2")
        with other, pytest.raises(RemoteFailed):  # the server's CA is not the system's
            other.register("m", untrusted)


@pytest.mark.parametrize(
    "path", ["/dev/zero", "/etc", "/no/such/ca.pem", "/etc/hostname", "BIG", "FIFO"]
)
def test_a_ca_file_that_is_none_is_refused_with_one_message(path: str, tmp_path: Path) -> None:
    from mlops.core.remote import parse_remote
    from mlops.flavors.v2client import transport

    if path == "BIG":
        path = str(tmp_path / "big.pem")
        Path(path).write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (2 << 20))
    if path == "FIFO":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    remote = {"url": "https://10.0.0.5:8443", "model": "m", "ca_file": path}
    spec = parse_remote({"remote": remote}, "t")
    with pytest.raises(InvalidInput, match=r"not a readable file of PEM certificates$"):
        transport(spec, None)


class Trickle(http.server.BaseHTTPRequestHandler):
    """A server that answers at once, then sends its body one byte every 50 ms."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "1000")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                threading.Event().wait(0.05)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_that_trickles_its_answer_times_out_as_a_whole() -> None:
    import time

    from mlops.core.remote import parse_remote
    from mlops.core.signature import Signature, TensorSpec
    from mlops.errors import RemoteTimedOut
    from mlops.flavors.remote import RemoteFlavor, RemoteModel
    from mlops.flavors.v2client import transport

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        spec = parse_remote({"remote": {"url": url, "model": "m", "timeout_s": 0.5}}, "t")
        signature = Signature(inputs=(TensorSpec("x", "float64", (-1, 2)),))
        started = time.monotonic()
        with pytest.raises(RemoteTimedOut):
            RemoteFlavor().predict(
                RemoteModel(spec, transport(spec, None)),
                np.array([[1.0, 2.0]]),
                "predict",
                signature,
                "m:1",
            )
        # Each byte came within httpx's read timeout; the whole answer would take 50 s.
        assert time.monotonic() - started < 30
    finally:
        server.shutdown()
        server.server_close()
