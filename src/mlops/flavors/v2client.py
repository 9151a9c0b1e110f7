"""A client of an Open Inference Protocol (V2) server, over REST (httpx) or gRPC (grpcio, with
the stubs `tritonclient[grpc]` ships, as the gateway's own gRPC server uses): readiness, model
metadata and inference, each attempt bounded by the spec's timeout, retried only when the
server was not reached or said it is unavailable (a connection refused or reset, 502/503/504,
429, UNAVAILABLE). A request that timed out is not sent again: the server may still be working
on it. Every failure is a `RemoteFailed` (`RemoteTimedOut` for a timeout) whose message names
the server and what it said, clipped; nothing follows a redirect, and answers are bounded in
size.

Calls are synchronous: they run on the thread of the batcher of the release that serves the
version (a batch of requests is one call), or where a version is registered.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from mlops.core.binary import decode_tensor, encode_tensor
from mlops.core.contents import typed_contents
from mlops.core.payload import V2_DTYPES, PayloadError, v2_tensor
from mlops.core.remote import RemoteSpec, host_port
from mlops.errors import InvalidInput, RemoteFailed, RemoteTimedOut
from mlops.ratelog import RateLimitedLog

CA_MAX = 1 << 20
"""The largest CA file read (bytes)."""
ANSWER_MAX = 64 << 20
"""The largest answer read from a model server (bytes)."""
MESSAGE_MAX = 200
"""Characters of a server's own error message kept in ours."""
BACKOFF_S = 0.05
RETRY_STATUS = {429, 502, 503, 504}
T = TypeVar("T")
log = RateLimitedLog(logging.getLogger("mlops.flavors.remote"))


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray


class Transport(Protocol):
    """One V2 server's model: its readiness, its metadata, and inference."""

    def ready(self) -> bool: ...

    def metadata(self) -> dict[str, Any]:
        """The model's metadata as V2 REST gives it: name, versions, platform, inputs, outputs
        (each with name, datatype, shape)."""
        ...

    def infer(self, inputs: Sequence[Tensor], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """The outputs the server answers, by name (those asked for, or all it gives)."""
        ...

    def close(self) -> None: ...


def transport(spec: RemoteSpec, token: str | None) -> Transport:
    """The client for `spec`'s server (no connection is made until the first call)."""
    ca = _read_ca(spec.ca_file) if spec.ca_file else None
    if spec.protocol == "grpc":
        return GrpcTransport(spec, token, ca)
    return RestTransport(spec, token, ca)


def with_retries(spec: RemoteSpec, call: Callable[[], T]) -> T:
    """`call`, tried again (at most `spec.retries` times) while it fails in a way worth
    another attempt (`RemoteFailed.retryable`)."""
    for attempt in range(spec.retries + 1):
        try:
            return call()
        except RemoteFailed as exc:
            if not exc.retryable or attempt == spec.retries:
                raise
            log.log(logging.WARNING, f"retry:{spec.where}", "trying again: %s", exc)
            time.sleep(BACKOFF_S * (attempt + 1))
    raise AssertionError("unreachable")


def _read_ca(path: str) -> bytes:
    """The PEM certificates of a CA file. One message for every way it can be wrong, so that
    the path a version names reveals nothing of the files the process can read."""
    refused = InvalidInput(f"remote.ca_file {path[:200]}: not a readable file of PEM certificates")
    try:
        # Non-blocking: opening a FIFO to read would otherwise wait for a writer.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise refused
            data = handle.read(CA_MAX + 1)
    except OSError:
        raise refused from None
    if len(data) > CA_MAX or b"-----BEGIN CERTIFICATE-----" not in data:
        raise refused
    try:
        ssl.create_default_context(cadata=data.decode("ascii"))
    except (ValueError, ssl.SSLError):
        raise refused from None
    return data


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX] + "…"


class RestTransport:
    def __init__(self, spec: RemoteSpec, token: str | None, ca: bytes | None) -> None:
        import httpx

        self.spec = spec
        self.path = f"/v2/{spec.model_path}"
        headers = {"authorization": f"Bearer {token}"} if token else {}
        verify: ssl.SSLContext | bool = True
        if ca is not None:
            verify = ssl.create_default_context(cadata=ca.decode("ascii"))
        self._httpx = httpx
        self.client = httpx.Client(
            base_url=spec.url,
            headers=headers,
            timeout=spec.timeout_s,
            verify=verify,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    def ready(self) -> bool:
        status, _ = self._call("GET", f"{self.path}/ready")
        return status == 200

    def metadata(self) -> dict[str, Any]:
        status, body = self._call("GET", self.path)
        answer = self._json(body)
        if status != 200 or not isinstance(answer, dict):
            raise RemoteFailed(f"{self.spec.where}: metadata: HTTP {status} {_error_of(answer)}")
        return answer

    def infer(self, inputs: Sequence[Tensor], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        request: dict[str, Any] = {
            "inputs": [
                {
                    "name": t.name,
                    "shape": list(t.array.shape),
                    "datatype": t.datatype,
                    "data": t.array.reshape(-1).tolist(),
                }
                for t in inputs
            ]
        }
        if outputs:
            request["outputs"] = [{"name": name} for name in outputs]
        status, body = self._call("POST", f"{self.path}/infer", request)
        answer = self._json(body)
        if status != 200:
            raise RemoteFailed(f"{self.spec.where}: HTTP {status} {_error_of(answer)}")
        if not isinstance(answer, dict) or not isinstance(answer.get("outputs"), list):
            raise RemoteFailed(f"{self.spec.where}: the answer holds no 'outputs' list")
        found: dict[str, np.ndarray] = {}
        for index, tensor in enumerate(answer["outputs"]):
            try:
                name, array = v2_tensor(tensor, index, field="outputs")
            except PayloadError as exc:
                raise RemoteFailed(f"{self.spec.where}: {exc}") from None
            found[name] = array
        return found

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        httpx = self._httpx

        def late() -> RemoteTimedOut:
            return RemoteTimedOut(f"{self.spec.where}: no answer within {self.spec.timeout_s:g} s")

        def attempt() -> tuple[int, bytes]:
            # httpx times each read; the deadline bounds the whole answer (a server that
            # trickles bytes would hold the batch's thread).
            deadline = time.monotonic() + self.spec.timeout_s
            try:
                with self.client.stream(method, path, json=body) as answer:
                    data = bytearray()
                    for chunk in answer.iter_bytes():
                        data += chunk
                        if len(data) > ANSWER_MAX:
                            raise RemoteFailed(
                                f"{self.spec.where}: an answer larger than {ANSWER_MAX >> 20} MiB"
                            )
                        if time.monotonic() > deadline:
                            raise late()
                    status = answer.status_code
            except httpx.TimeoutException:
                raise late() from None
            except httpx.TransportError as exc:
                raise RemoteFailed(
                    f"{self.spec.where}: {type(exc).__name__}: {_clip(str(exc))}", retryable=True
                ) from None
            if status in RETRY_STATUS:
                message = f"{self.spec.where}: HTTP {status} {_error_of(self._json(data))}"
                raise RemoteFailed(message, retryable=True)
            return status, bytes(data)

        return with_retries(self.spec, attempt)

    def _json(self, body: bytes | bytearray) -> Any:
        import json

        try:
            return json.loads(body) if body else None
        except (ValueError, RecursionError):
            return None


def _error_of(answer: Any) -> str:
    """The message of a V2 error answer ({"error": "..."}), clipped."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return _clip(answer["error"])
    return ""


class GrpcTransport:
    def __init__(self, spec: RemoteSpec, token: str | None, ca: bytes | None) -> None:
        import grpc
        from tritonclient.grpc import service_pb2 as pb
        from tritonclient.grpc import service_pb2_grpc as pb_grpc

        self.spec = spec
        self._grpc, self._pb = grpc, pb
        options = [
            ("grpc.max_receive_message_length", ANSWER_MAX),
            ("grpc.max_send_message_length", ANSWER_MAX),
            ("grpc.enable_retries", 0),
        ]
        target = host_port(spec.host, spec.port)
        if spec.tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.metadata_pairs = (("authorization", f"Bearer {token}"),) if token else ()

    def ready(self) -> bool:
        pb = self._pb
        request = pb.ModelReadyRequest(name=self.spec.model, version=self.spec.version or "")
        return bool(self._call(self.stub.ModelReady, request).ready)

    def metadata(self) -> dict[str, Any]:
        pb = self._pb
        request = pb.ModelMetadataRequest(name=self.spec.model, version=self.spec.version or "")
        found = self._call(self.stub.ModelMetadata, request)
        return {
            "name": found.name,
            "versions": list(found.versions),
            "platform": found.platform,
            "inputs": [_spec_of(t) for t in found.inputs],
            "outputs": [_spec_of(t) for t in found.outputs],
        }

    def infer(self, inputs: Sequence[Tensor], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        pb = self._pb
        request = pb.ModelInferRequest(
            model_name=self.spec.model,
            model_version=self.spec.version or "",
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name=t.name, datatype=t.datatype, shape=list(t.array.shape)
                )
                for t in inputs
            ],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs],
            raw_input_contents=[encode_tensor(t.array) for t in inputs],
        )
        answer = self._call(self.stub.ModelInfer, request)
        raws = list(answer.raw_output_contents)
        if raws and len(raws) != len(answer.outputs):
            raise RemoteFailed(
                f"{self.spec.where}: {len(raws)} raw outputs for {len(answer.outputs)} outputs"
            )
        found: dict[str, np.ndarray] = {}
        for index, tensor in enumerate(answer.outputs):
            found[tensor.name] = self._output(tensor, raws[index] if raws else None)
        return found

    def close(self) -> None:
        self.channel.close()

    def _output(self, tensor: Any, raw: bytes | None) -> np.ndarray:
        where = f"{self.spec.where}: outputs[{tensor.name[:40]}]"
        dtype = V2_DTYPES.get(tensor.datatype)
        shape = list(tensor.shape)
        if dtype is None or not all(0 <= d < 2**31 for d in shape) or len(shape) > 8:
            raise RemoteFailed(f"{where}: datatype {tensor.datatype[:20]!r} shape {shape[:8]}")
        try:
            if raw is not None:
                return decode_tensor(raw, tensor.datatype, shape, dtype, where)
            data = typed_contents(tensor, "outputs")
            plain = {"name": tensor.name, "shape": shape, "datatype": tensor.datatype, "data": data}
            return v2_tensor(plain, 0, field="outputs")[1]
        except PayloadError as exc:
            raise RemoteFailed(f"{where}: {exc}") from None

    def _call(self, method: Any, request: Any) -> Any:
        grpc = self._grpc
        retry = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}

        def attempt() -> Any:
            try:
                return method(
                    request, timeout=self.spec.timeout_s, metadata=self.metadata_pairs or None
                )
            except grpc.RpcError as exc:
                code = exc.code()
                message = f"{self.spec.where}: {code.name} {_clip(exc.details() or '')}"
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise RemoteTimedOut(message) from None
                raise RemoteFailed(message, retryable=code in retry) from None

        return with_retries(self.spec, attempt)


def _spec_of(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
