"""The Open Inference Protocol over gRPC, against a real `mlops serve --grpc-port`, driven by
Triton's own gRPC client and by the generated stubs directly: metadata, readiness,
predictions equal to the model's own, errors with their status codes, predict tokens, and a
canary rolled back while all its traffic comes over gRPC."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from mlops import Client
from tests.models import training_data
from tests.server import SETTLE_S, Server, eventually, free_port, running_server

ROWS = training_data()[0][:8]


class Served:
    def __init__(self, server: Server, client: Client, grpc_port: int, token: str) -> None:
        self.server, self.client, self.token = server, client, token
        self.target = f"127.0.0.1:{grpc_port}"

    def triton(self) -> Any:
        return triton.InferenceServerClient(url=self.target)


@pytest.fixture
def served(tmp_path: Path, model_files: dict[str, Path]) -> Iterator[Served]:
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.register("m", model_files["fails_live"], trust=True)
        client.deploy("api", model="m:1")
        token = client._service.create_token("app", role=None, scopes=["predict"]).secret
        port = free_port()
        args = ("--grpc-port", str(port), "--max-body-mb", "0.05")
        with running_server(store_url, home, *args) as server:
            yield Served(server, client, port, token)


def infer(client: Any, rows: np.ndarray, **kwargs: Any) -> Any:
    tensor = triton.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    return client.infer("api", [tensor], **kwargs)


def test_metadata_readiness_and_predictions_equal_the_models_own(
    served: Served, model_files: dict[str, Path]
) -> None:
    client = served.triton()
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("api")
        assert client.is_model_ready("api", "1")
        assert not client.is_model_ready("api", "9")
        assert not client.is_model_ready("nope")
        assert client.get_server_metadata().name == "mlops"
        meta = client.get_model_metadata("api")
        assert (meta.name, list(meta.versions)) == ("api", ["1"])
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("input", "FP64", [-1, 6])
        ]
        expected = joblib.load(model_files["joblib"]).predict(ROWS)
        result = infer(client, ROWS, request_id="r-1", headers={"x-routing-key": "user-7"})
        np.testing.assert_array_equal(result.as_numpy("predict"), expected)
        response = result.get_response()
        assert (response.model_name, response.model_version, response.id) == ("api", "1", "r-1")
        pinned = infer(client, ROWS, model_version="1")
        np.testing.assert_array_equal(pinned.as_numpy("predict"), expected)
        both = infer(
            client,
            ROWS,
            outputs=[
                triton.InferRequestedOutput("predict"),
                triton.InferRequestedOutput("predict_proba"),
            ],
        )
        np.testing.assert_array_equal(both.as_numpy("predict"), expected)
        probabilities = joblib.load(model_files["joblib"]).predict_proba(ROWS)
        np.testing.assert_allclose(both.as_numpy("predict_proba"), probabilities)
    finally:
        client.close()
    # Typed contents, not raw bytes, through the generated stub itself.
    with grpc.insecure_channel(served.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        tensor = pb.ModelInferRequest.InferInputTensor(
            name="input",
            datatype="FP64",
            shape=list(ROWS.shape),
            contents=pb.InferTensorContents(fp64_contents=ROWS.reshape(-1).tolist()),
        )
        answer = stub.ModelInfer(pb.ModelInferRequest(model_name="api", inputs=[tensor]))
        (raw,) = answer.raw_output_contents
        np.testing.assert_array_equal(np.frombuffer(raw, dtype="<i8"), expected)


def test_errors_have_their_grpc_status_codes(served: Served) -> None:
    client = served.triton()

    def refused(rows: np.ndarray, **kwargs: Any) -> InferenceServerException:
        with pytest.raises(InferenceServerException) as caught:
            infer(client, rows, **kwargs)
        return caught.value

    try:
        narrow = refused(ROWS[:, :5])
        assert narrow.status() == "StatusCode.INVALID_ARGUMENT"
        assert "5 features, the model takes 6" in narrow.message()
        with pytest.raises(InferenceServerException) as unknown:
            client.infer("nope", [triton.InferInput("input", [1, 6], "FP64")])
        assert unknown.value.status() == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException) as meta:
            client.get_model_metadata("api", "9")
        assert meta.value.status() == "StatusCode.NOT_FOUND"
        huge = refused(np.zeros((2000, 6)))  # 96 KB, past --max-body-mb 0.05
        assert huge.status() == "StatusCode.RESOURCE_EXHAUSTED"
        nan = refused(np.full((1, 6), np.nan))
        assert nan.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        client.close()
    with grpc.insecure_channel(served.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        cases = [
            # raw bytes that disagree with the shape
            pb.ModelInferRequest(
                model_name="api",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP64", shape=[2, 6]
                    )
                ],
                raw_input_contents=[b"\0" * 8],
            ),
            # a datatype nobody knows
            pb.ModelInferRequest(
                model_name="api",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP8", shape=[1, 6]
                    )
                ],
            ),
            # typed contents of another count than the shape says
            pb.ModelInferRequest(
                model_name="api",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input",
                        datatype="FP64",
                        shape=[1, 6],
                        contents=pb.InferTensorContents(fp64_contents=[1.0] * 7),
                    )
                ],
            ),
            # more raw entries than inputs
            pb.ModelInferRequest(
                model_name="api",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP64", shape=[1, 6]
                    )
                ],
                raw_input_contents=[b"\0" * 48, b"\0" * 48],
            ),
        ]
        for request in cases:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as unimplemented:
            stub.RepositoryIndex(pb.RepositoryIndexRequest())
        assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # The refusals were counted as the REST path counts them: the two of the Triton client
    # past decoding, and the four of the stub (the oversized message never reached us).
    with served.server.client() as http:
        eventually(
            lambda: http.get("/v1/measurements/api").json()["revisions"],
            lambda found: bool(found) and found[0]["errors"]["rejected"] == 6,
            SETTLE_S,
        )


def test_a_canary_fed_only_over_grpc_is_rolled_back_by_its_analysis(served: Served) -> None:
    spec = {
        "strategy": "canary",
        "steps": [{"set_weight": 50}, {"pause": {"duration": "10m"}}],
        "progress_deadline": "20m",
        "analysis": {"latency_tolerance": None},
    }
    served.client.deploy("api", model="m:2", rollout=spec)
    eventually(lambda: served.client.status("api")[0], lambda s: s.rollout is not None, SETTLE_S)
    stop = threading.Event()

    def feed() -> None:
        client = served.triton()
        try:
            while not stop.is_set():
                with contextlib.suppress(InferenceServerException):  # the candidate's failures
                    infer(client, ROWS[:1])
        finally:
            client.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        status = eventually(
            lambda: served.client.status("api")[0],
            lambda s: s.rollout is None and s.revision == 1,
            SETTLE_S * 3,
        )
    finally:
        stop.set()
        feeder.join(30)
    assert status.components["model"].version == 1
    rollback = next(e for e in served.client.events("api", limit=10) if e.action == "rollback")
    assert rollback.trigger == "analysis"


def test_predictions_over_grpc_need_a_token_when_the_server_asks(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.deploy("api", model="m:1")
        token = client._service.create_token("app", role=None, scopes=["predict"]).secret
        viewer = client._service.create_token("eyes", role="viewer").secret
        port = free_port()
        with running_server(store_url, home, "--grpc-port", str(port), "--predict-token"):
            grpc_client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
            try:
                with pytest.raises(InferenceServerException) as none:
                    infer(grpc_client, ROWS)
                assert none.value.status() == "StatusCode.UNAUTHENTICATED"
                with pytest.raises(InferenceServerException) as wrong:
                    infer(grpc_client, ROWS, headers={"authorization": f"Bearer {viewer}"})
                assert wrong.value.status() == "StatusCode.PERMISSION_DENIED"
                ok = infer(grpc_client, ROWS, headers={"authorization": f"Bearer {token}"})
                assert ok.as_numpy("predict").shape == (len(ROWS),)
            finally:
                grpc_client.close()


def test_grpc_serves_tls_with_the_same_certificate(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    from tests.tls import make_tls

    files = make_tls(tmp_path)
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.deploy("api", model="m:1")
    port = free_port()
    tls = ("--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]))
    with running_server(store_url, home, "--grpc-port", str(port), *tls):
        trusted = triton.InferenceServerClient(
            url=f"127.0.0.1:{port}", ssl=True, root_certificates=str(files["ca"])
        )
        try:
            assert infer(trusted, ROWS).as_numpy("predict").shape == (len(ROWS),)
        finally:
            trusted.close()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.GRPCInferenceServiceStub(plain).ServerLive(
                    pb.ServerLiveRequest(), timeout=10
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
