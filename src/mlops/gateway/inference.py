"""The inference handlers: KServe V1 predict, Open Inference Protocol (V2) infer and model
metadata. They decode and encode; the prediction path (`prediction`) does the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from mlops.core import binary
from mlops.core.payload import (
    NUMPY_TO_V2,
    PROBABILITIES,
    Decoded,
    PayloadError,
    decode_v1,
    decode_v2,
    v2_datatype,
)
from mlops.core.signature import Signature
from mlops.errors import BodyTooLarge, NotRouted
from mlops.gateway.access import refused
from mlops.gateway.http import CLOSES, error, json_response, request_id
from mlops.gateway.prediction import Routed, log_failure, pinned_target
from mlops.gateway.routes import DeploymentRoute, Target
from mlops.gateway.state import Gateway
from mlops.web.body import drained, read_body

PARSE_OFF_LOOP_BYTES = 256 * 1024
"""Bodies larger than this are parsed and decoded in a thread, not on the event loop."""
CONTAINERS_PER_ROW = 16
"""Lists and objects a body may hold per row it may carry (`max_batch_rows`), counted before
parsing: building millions of empty lists holds the interpreter for seconds, thread or not."""

Decode = Callable[..., Decoded]


async def v1_predict(request: Request) -> Response:
    return await _serve(request, "v1")


async def v2_infer(request: Request) -> Response:
    return await _serve(request, "v2")


async def _serve(request: Request, protocol: str) -> Response:
    gateway: Gateway = request.app.state.gateway
    name = request.path_params["name"]
    if gateway.config.predict_token:
        denied = await refused(request, gateway, "predict", name)
        if denied is not None:
            return denied
    try:
        routed = gateway.path.route(
            name,
            request_id(request),
            key=request.headers.get("x-routing-key"),
            version=request.path_params.get("version"),
        )
    except NotRouted as exc:
        await drained(request, gateway.config.max_body_bytes)
        return error(str(exc), 404)
    target = routed.target
    headers = {
        "x-request-id": routed.request_id,
        "x-model-version": target.pipeline.primary.label,
        "x-release-revision": str(target.revision),
        "x-components": target.pipeline.labels,
    }
    decode = decode_v1 if protocol == "v1" else decode_v2
    parsed = await _read(request, gateway, routed, decode, headers)
    if isinstance(parsed, Response):
        return parsed
    data, decoded = parsed
    try:
        check_probabilities(routed, decoded)
    except PayloadError as exc:
        gateway.path.refuse(routed)
        return error(exc.message, 400, headers)
    answer = await gateway.path.predict(routed, decoded)
    if answer.failure is not None:
        _, status, message = answer.failure
        extra = {"retry-after": "1"} if status == 503 else {}
        return error(message, status, {**headers, **extra})
    assert answer.outputs is not None
    if protocol == "v1":
        return json_response({"predictions": _outputs_json(answer.outputs)}, headers=headers)
    outputs = await v2_outputs(routed, decoded, answer.outputs, gateway.config.timeout_s)
    if isinstance(outputs, tuple):
        return error(outputs[1], outputs[0], headers)
    return _v2_response(_v2_answer(name, routed, data), data, outputs, headers)


def check_probabilities(routed: Routed, decoded: Decoded) -> None:
    """Refuse a request for probabilities that its release cannot give, before predicting."""
    if decoded.probabilities and routed.target.pipeline.probability_classes is None:
        raise PayloadError(
            f"outputs: {PROBABILITIES!r} is for a release that is one classifier; "
            f"{routed.target.pipeline.labels} gives none"
        )


async def v2_outputs(
    routed: Routed, decoded: Decoded, predictions: np.ndarray, timeout_s: float
) -> list[tuple[str, np.ndarray]] | tuple[int, str]:
    """The outputs a V2 request asked for, by name (the predictions, the probabilities), or
    why they cannot be given: (HTTP status, message). The probabilities come from a call of
    their own, after the batched prediction, bounded by the same timeout."""
    out = [] if decoded.output_name is None else [(decoded.output_name, predictions)]
    if decoded.probabilities:
        pipeline = routed.target.pipeline
        try:
            found = await asyncio.wait_for(
                asyncio.to_thread(pipeline.probabilities, decoded.rows), timeout_s
            )
        except TypeError as exc:  # the flavor's word: no probabilities from this model
            return 400, f"outputs: {exc}"
        except TimeoutError:
            return 504, f"the class probabilities took more than {timeout_s:g} s"
        except Exception as exc:
            log_failure(routed.target, routed.request_id, exc)
            return 500, f"{pipeline.primary.label} failed to give class probabilities"
        out.append((PROBABILITIES, np.asarray(found, dtype=np.float64)))
    return out


def _v2_response(
    answered: dict[str, Any],
    request: Any,
    outputs: list[tuple[str, np.ndarray]],
    headers: dict[str, str],
) -> Response:
    """The answer, each output as JSON data or, where asked, as raw bytes after the JSON
    (binary tensor data)."""
    raws = []
    for name, array in outputs:
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": v2_datatype(array),
            "shape": list(array.shape),
        }
        if binary.wants_binary(request, name):
            raws.append(binary.encode_tensor(array))
            tensor["parameters"] = {binary.SIZE_KEY: len(raws[-1])}
        else:
            tensor["data"] = _outputs_json(array.reshape(-1))
        answered["outputs"].append(tensor)
    if not raws:
        return json_response(answered, headers=headers)
    text = orjson.dumps(answered, option=orjson.OPT_SERIALIZE_NUMPY)
    extra = {binary.HEADER: str(len(text))}
    return Response(
        b"".join([text, *raws]),
        media_type="application/octet-stream",
        headers={**headers, **extra},
    )


async def _read(
    request: Request, gateway: Gateway, routed: Routed, decode: Decode, headers: dict[str, str]
) -> tuple[Any, Decoded] | Response:
    """The request's JSON and its decoded rows, or the answer that refuses it (counted)."""
    limit = gateway.config.max_body_bytes
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        gateway.path.refuse(routed)
        return error(f"request body larger than {limit} bytes", 413, headers | CLOSES)
    try:
        header = request.headers.get(binary.HEADER)
        if header is not None and decode is not decode_v2:
            raise PayloadError("binary tensor data is part of the V2 protocol (/v2/models/...)")
        text, raw = binary.split_body(body, header)
        signature = routed.target.pipeline.signature
        args = (text, raw, decode, signature, gateway.config.max_batch_rows)
        if len(body) > PARSE_OFF_LOOP_BYTES:
            return await asyncio.to_thread(_parse, *args)
        return _parse(*args)
    except orjson.JSONDecodeError as exc:
        gateway.path.refuse(routed)
        return error(f"body is not valid JSON: {exc}", 400, headers)
    except PayloadError as exc:
        gateway.path.refuse(routed)
        return error(exc.message, 400, headers)


def _parse(
    body: bytes, raw: bytes, decode: Decode, signature: Signature, max_rows: int
) -> tuple[Any, Decoded]:
    allowed = CONTAINERS_PER_ROW * max_rows + 64
    if body.count(b"[") + body.count(b"{") > allowed:
        raise PayloadError(f"body: more than {allowed} lists and objects ({max_rows} rows allowed)")
    data = orjson.loads(body)
    if raw:
        return data, decode(data, signature, max_rows, raw)
    return data, decode(data, signature, max_rows)


def _v2_answer(name: str, routed: Routed, data: Any) -> dict[str, Any]:
    request_tag = data.get("id") if isinstance(data, dict) else None
    return {
        "model_name": name,
        "model_version": str(routed.target.pipeline.primary.record.version),
        "id": request_tag if isinstance(request_tag, str) else routed.request_id,
        "outputs": [],
    }


def _outputs_json(array: np.ndarray) -> Any:
    return array.tolist() if array.dtype == object else array


async def model_metadata(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    name = request.path_params["name"]
    route = gateway.table.deployments.get(name)
    if route is None:
        return error(f"deployment {name!r} not found", 404)
    version = request.path_params.get("version")
    pinned = pinned_target(route, version) if version is not None else None
    if version is not None and pinned is None:
        return error(f"deployment {name!r} serves no version {version!r}", 404)
    target = pinned or (
        route.targets[route.stable_revision]
        if route.stable_revision in route.targets
        else next(iter(route.targets.values()))
    )
    return json_response(metadata_of(name, route, target, version))


def metadata_of(
    name: str, route: DeploymentRoute, target: Target, version: str | None
) -> dict[str, Any]:
    """A deployment's V2 model metadata, as `target` (a pinned version, or the stable
    release) serves it: both transports answer with this."""
    signature = target.pipeline.signature
    versions = {str(t.pipeline.primary.record.version) for t in route.targets.values()}
    return {
        "name": name,
        "versions": [version] if version is not None else sorted(versions),
        "platform": target.pipeline.primary.record.flavor,
        "inputs": [
            {"name": spec.name, "datatype": _v2_type(spec.dtype), "shape": list(spec.shape)}
            for spec in signature.inputs
        ],
        "outputs": [
            {"name": spec.name, "datatype": _v2_type(spec.dtype), "shape": list(spec.shape)}
            for spec in target.pipeline.output_signature.outputs
        ]
        + _probability_output(target),
    }


def _probability_output(target: Target) -> list[dict[str, Any]]:
    classes = target.pipeline.probability_classes
    if not classes:
        return []
    return [{"name": PROBABILITIES, "datatype": "FP64", "shape": [-1, len(classes)]}]


def _v2_type(dtype: str) -> str:
    return NUMPY_TO_V2.get(dtype, "BYTES")
