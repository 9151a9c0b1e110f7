"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`): ServerLive,
ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, on
`mlops serve --grpc-port`, in every worker (the port is shared, SO_REUSEPORT, and the kernel
spreads connections over the workers).

One prediction path, two transports: a ModelInfer request becomes the same decoded request
as a V2 REST body (its typed contents as `data`, its `raw_input_contents` as binary tensor
data) and goes through the worker's own routing, batching, limits, measurements, rollouts
and predict tokens. The server runs on the worker's own event loop, beside the HTTP server:
no hop between threads on the way to the model.

The messages and the service come from the generated stubs that `tritonclient[grpc]` ships
(Triton's `grpc_service.proto`: the KServe V2 service under the same name, with more RPCs,
which answer UNIMPLEMENTED here).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from mlops import __version__
from mlops.core import binary
from mlops.core.contents import typed_contents
from mlops.core.payload import Decoded, PayloadError, decode_v2, v2_datatype
from mlops.core.signature import Signature
from mlops.errors import AccessDenied, NotRouted, TooManyAttempts, Unauthenticated
from mlops.gateway.inference import (
    PARSE_OFF_LOOP_BYTES,
    check_probabilities,
    metadata_of,
    v2_outputs,
)
from mlops.gateway.prediction import Answer, Routed, pinned_target
from mlops.gateway.state import Gateway
from mlops.service.authn import Attempt
from mlops.web.access import bearer

log = logging.getLogger("mlops.gateway")

ROUTING_KEY = "x-routing-key"
REQUEST_ID = "x-request-id"
GRACE_S = 5.0

STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclass(frozen=True)
class Failure:
    """A request refused or failed, as its gRPC status."""

    code: grpc.StatusCode
    message: str

    @classmethod
    def of(cls, status: int, message: str) -> Failure:
        return cls(STATUS_CODES.get(status, grpc.StatusCode.INTERNAL), message)


def as_request(message: pb.ModelInferRequest) -> tuple[dict[str, Any], bytes]:
    """A ModelInfer request as the V2 REST body it stands for, and its binary data."""
    raws = list(message.raw_input_contents)
    if raws and len(raws) != len(message.inputs):
        raise PayloadError(
            f"raw_input_contents: {len(raws)} entries for {len(message.inputs)} inputs"
        )
    inputs = []
    for index, tensor in enumerate(message.inputs):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "shape": list(tensor.shape),
            "datatype": tensor.datatype,
        }
        if raws:
            if tensor.HasField("contents"):
                raise PayloadError(f"inputs[{tensor.name}]: both contents and raw_input_contents")
            entry["parameters"] = {binary.SIZE_KEY: len(raws[index])}
        else:
            entry["data"] = typed_contents(tensor)
        inputs.append(entry)
    outputs = [{"name": o.name} for o in message.outputs]
    body: dict[str, Any] = {"inputs": inputs, "id": message.id}
    if outputs:
        body["outputs"] = outputs
    return body, b"".join(raws)


def decode(message: Any, signature: Signature, max_rows: int) -> Decoded:
    body, raw = as_request(message)
    return decode_v2(body, signature, max_rows, raw)


def as_response(
    name: str, routed: Routed, request_id: str, outputs: list[tuple[str, np.ndarray]]
) -> Any:
    tensors = [
        pb.ModelInferResponse.InferOutputTensor(
            name=output, datatype=v2_datatype(array), shape=list(array.shape)
        )
        for output, array in outputs
    ]
    return pb.ModelInferResponse(
        model_name=name,
        model_version=str(routed.target.pipeline.primary.record.version),
        id=request_id,
        outputs=tensors,
        raw_output_contents=[binary.encode_tensor(array) for _, array in outputs],
    )


class Servicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.gateway.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(
            name="mlops", version=__version__, extensions=["binary_tensor_data"]
        )

    def _target(self, name: str, version: str) -> Any:
        """The route and the target a metadata or readiness request asks about, or a Failure."""
        route = self.gateway.table.deployments.get(name)
        if route is None:
            return Failure.of(404, f"deployment {name!r} not found")
        if version:
            target = pinned_target(route, version)
            if target is None:
                return Failure.of(404, f"deployment {name!r} serves no version {version!r}")
            return route, target
        stable = route.targets.get(route.stable_revision) if route.stable_revision else None
        return route, stable or next(iter(route.targets.values()))

    async def ModelReady(self, request: Any, context: Any) -> Any:
        found = self._target(request.name, request.version)
        return pb.ModelReadyResponse(ready=not isinstance(found, Failure))

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        found = self._target(request.name, request.version)
        if isinstance(found, Failure):
            await context.abort(found.code, found.message)
        route, target = found
        meta = metadata_of(request.name, route, target, request.version or None)
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        found: Any = None
        if self.gateway.config.predict_token:
            found = await self._authorize(metadata, request.model_name, context)
        if found is None:
            found = await self._infer(request, metadata)
        if isinstance(found, Failure):
            await context.abort(found.code, found.message)
        return found

    async def _authorize(self, metadata: dict[str, str], name: str, context: Any) -> Failure | None:
        authenticator = self.gateway.authenticator
        secret = bearer(metadata.get("authorization"))
        if authenticator.allowed_cached(secret, "predict", name) is not None:
            return None
        attempt = Attempt("POST", f"grpc ModelInfer {name}"[:256], context.peer(), name)
        try:
            await asyncio.to_thread(authenticator.authorize, secret, "predict", attempt)
        except (Unauthenticated, TooManyAttempts, AccessDenied) as exc:
            return Failure.of(exc.http_status, exc.message)
        return None

    async def _infer(self, request: Any, metadata: dict[str, str]) -> Any:
        """Route, decode, predict, as the REST handler does; the answer, or a Failure."""
        gateway, name = self.gateway, request.model_name
        try:
            routed = gateway.path.route(
                name,
                request.id or metadata.get(REQUEST_ID) or "",
                key=metadata.get(ROUTING_KEY),
                version=request.model_version or None,
            )
        except NotRouted as exc:
            return Failure.of(404, str(exc))
        try:
            signature = routed.target.pipeline.signature
            args = (request, signature, gateway.config.max_batch_rows)
            if request.ByteSize() > PARSE_OFF_LOOP_BYTES:
                decoded = await asyncio.to_thread(decode, *args)
            else:
                decoded = decode(*args)
            check_probabilities(routed, decoded)
        except PayloadError as exc:
            gateway.path.refuse(routed)
            return Failure.of(400, exc.message)
        answer: Answer = await gateway.path.predict(routed, decoded)
        if answer.failure is not None:
            _, status, message = answer.failure
            return Failure.of(status, message)
        assert answer.outputs is not None
        outputs = await v2_outputs(routed, decoded, answer.outputs, gateway.config.timeout_s)
        if isinstance(outputs, tuple):
            return Failure.of(*outputs)
        return as_response(name, routed, request.id or routed.request_id, outputs)


class GrpcServer:
    """The gRPC server of one worker, on the worker's event loop."""

    def __init__(self, gateway: Gateway, host: str, port: int, tls: tuple[str, str] | None) -> None:
        self.gateway, self.host, self.port, self.tls = gateway, host, port, tls
        self._server: Any = None

    async def start(self) -> None:
        limit = self.gateway.config.max_body_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
                ("grpc.so_reuseport", 1),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(self.gateway), server)
        address = f"{self.host}:{self.port}"
        if self.tls is not None:
            with open(self.tls[0], "rb") as cert, open(self.tls[1], "rb") as key:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
        if not bound:
            raise OSError(f"gRPC: cannot listen on {address}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.stop(GRACE_S), GRACE_S + 5)
            except Exception:  # a stop that fails leaves nothing to wait for
                log.warning("gRPC server did not stop cleanly", exc_info=True)
