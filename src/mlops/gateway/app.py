"""The ASGI app: KServe V1 and V2 (Open Inference Protocol), feedback, measurements, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops import __version__
from mlops.controller.judge import analysis_judge
from mlops.controller.leader import LeaderLoop
from mlops.controller.loop import Controller
from mlops.core.fault import assess_fault, needs_reference, reference_revision
from mlops.core.measure import REFUSED
from mlops.core.payload import (
    Decoded,
    PayloadError,
    decode_v1,
    decode_v2,
    invalid_output,
    v2_datatype,
)
from mlops.core.ratelimit import TokenBucket
from mlops.errors import MlopsError
from mlops.gateway.batching import Overloaded
from mlops.gateway.lookup import UnknownKey
from mlops.gateway.ratelog import RateLimitedLog
from mlops.gateway.recorder import PromMetrics, Recorder
from mlops.gateway.routes import (
    BatchSettings,
    DeploymentRoute,
    LiveTable,
    RouteLoader,
    Target,
    Watcher,
)
from mlops.service import Service, utcnow
from mlops.settings import load_settings

log = logging.getLogger("mlops.gateway")
unexpected_log = RateLimitedLog(log)

CONFIG_ENV = "MLOPS_GATEWAY_CONFIG"
REQUEST_ID_MAX = 64
LABEL_BODY_MAX = 4096
LABEL_TEXT_MAX = 256
LABEL_NUMBER_MAX = 2**53
LABEL_POLL_S = 0.2
PARSE_OFF_LOOP_BYTES = 256 * 1024
"""Bodies larger than this are parsed and decoded in a thread, not on the event loop."""
CONTAINERS_PER_ROW = 16
"""Lists and objects a body may hold per row it may carry (`max_batch_rows`), counted before
parsing: building millions of empty lists holds the interpreter for seconds, thread or not."""
MAX_WINDOW_S = 366 * 24 * 3600.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class GatewayConfig:
    home: str | None = None
    store: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_rows: int = 1024
    batch_max_rows: int = 64
    batch_max_wait_ms: float = 0.0
    queue_max_rows: int = 2048
    timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    """Seconds a client has to send a request's headers, then as many for its body."""
    limit_concurrency: int = 1024
    """Open connections (or requests in progress) per worker before new requests get 503."""
    keep_warm_s: float = 600.0
    flush_interval_s: float = 1.0
    fast_flush_s: float = 0.2
    """Flush interval while some deployment splits or mirrors traffic (a rollout)."""
    log_predictions: bool = True
    retention_s: float = 7 * 24 * 3600.0
    poll_s: float = 0.02
    controller: bool = True
    """Run the rollout controller in this process too (one leads across all, by a lease)."""
    labels_per_s: float = 200.0
    """Delayed labels taken per second and deployment by one worker (more: 429)."""
    worker: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> GatewayConfig:
        raw = os.environ.get(CONFIG_ENV)
        config = cls(**json.loads(raw)) if raw else cls()
        config.worker = f"{os.uname().nodename}:{os.getpid()}"
        return config


class Gateway:
    """Per-process state: the live table and what serves and measures it."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.service = Service(load_settings(home=config.home, store_url=config.store))
        self.loader = RouteLoader(
            self.service,
            BatchSettings(config.batch_max_rows, config.batch_max_wait_ms, config.queue_max_rows),
            config.keep_warm_s,
        )
        self.recorder = Recorder(
            self.service.store,
            config.worker,
            utcnow,
            flush_interval_s=config.flush_interval_s,
            fast_flush_s=config.fast_flush_s,
            fast=lambda: self.table.comparing,
            log_predictions=config.log_predictions,
            retention_s=config.retention_s,
            prom=PromMetrics(),
        )
        self.table = LiveTable(seq=-1)
        self.ready = False
        self.watcher = Watcher(self.loader, self._install, poll_s=config.poll_s)
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._label_limits: dict[int, TokenBucket] = {}
        self.leader: LeaderLoop | None = None
        if config.controller:
            ctl = Controller(self.service, analysis_judge, restores_in_child=True)
            self.leader = LeaderLoop(ctl, after_tick=ctl.deliver)

    def may_label(self, deployment_id: int) -> bool:
        rate = self.config.labels_per_s
        bucket = self._label_limits.setdefault(deployment_id, TokenBucket(rate, rate))
        return bucket.take(time.monotonic())

    def log_failure(self, target: Target, request_id: str, exc: BaseException) -> None:
        """A model's failure, with its cause, for the operator (never for the client): one line
        per release and kind of failure every few seconds."""
        unexpected_log.log(
            logging.WARNING,
            f"{target.deployment_id}:{target.revision}:{type(exc).__name__}",
            "%s revision %s failed on request %s: %s: %s",
            target.deployment,
            target.revision,
            request_id,
            type(exc).__name__,
            exc,
        )

    def _install(self, table: LiveTable) -> None:
        self.table = table  # the swap: one assignment of an immutable table
        self.ready = not table.failures

    async def start(self) -> None:
        await self.watcher.refresh()
        self.watcher.start()
        self.recorder.start()
        if self.leader is not None:
            self.leader.start()

    async def stop(self) -> None:
        if self.leader is not None:
            self.leader.stop()
        await self.watcher.stop()
        if self._shadow_tasks:
            await asyncio.wait(self._shadow_tasks, timeout=self.config.timeout_s)
        self.recorder.stop()
        self.loader.close()
        self.service.close()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


class _TooLarge(Exception):
    pass


# The body was left unread and the socket is closed after the answer (protocol.py); saying
# so keeps a client from sending its next request on it.
CLOSES = {"connection": "close"}


class _SlowBody(Exception):
    """The client did not send its whole body within the body timeout."""


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _given_request_id(value: str | None) -> str | None:
    if value and len(value) <= REQUEST_ID_MAX and value.isprintable():
        return value
    return None


def _request_id(request: Request) -> str:
    known = request.scope.get("state", {}).get("request_id")
    if isinstance(known, str):
        return known
    return _given_request_id(request.headers.get("x-request-id")) or uuid.uuid4().hex


class Guard:
    """Around every route: a request id for each request, paths with control characters
    refused, a deadline for the body, quiet client disconnects, and any unexpected exception
    turned into a generic JSON 500 (logged with the request id, never shown to the client)."""

    def __init__(self, app: ASGIApp, body_timeout_s: float = 10.0) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = _given_request_id(given) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        if _CONTROL.search(path):
            response = _error("path: control characters are not allowed", 400)
            await response(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, self._timed(receive), watched)
        except ClientDisconnect:
            log.debug("request %s: the client disconnected before the answer", request_id)
        except _SlowBody:
            log.debug("request %s: body not received within the body timeout", request_id)
            if not started:
                message = f"request body not received within {self.body_timeout_s:g} s"
                headers_out = {"x-request-id": request_id, "connection": "close"}
                await _error(message, 408, headers_out)(scope, receive, send)
        except Exception as exc:
            unexpected_log.log(
                logging.WARNING,
                type(exc).__name__,
                "request %s (%s %s) failed: %s: %s",
                request_id,
                scope.get("method"),
                path,
                type(exc).__name__,
                exc,
            )
            if not started:
                message = f"internal error; request id {request_id}"
                await _error(message, 500, {"x-request-id": request_id})(scope, receive, send)

    def _timed(self, receive: Receive) -> Receive:
        """`receive`, raising _SlowBody when the whole body takes longer than the timeout."""
        deadline: float | None = None
        complete = False

        async def timed() -> Message:
            nonlocal deadline, complete
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.body_timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _SlowBody from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        return timed


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.detail, exc.status_code, dict(exc.headers or {}))


def _parse(body: bytes, decode: Callable[..., Decoded], signature: Any, max_rows: int) -> Any:
    allowed = CONTAINERS_PER_ROW * max_rows + 64
    if body.count(b"[") + body.count(b"{") > allowed:
        raise PayloadError(f"body: more than {allowed} lists and objects ({max_rows} rows allowed)")
    data = orjson.loads(body)
    return data, decode(data, signature, max_rows)


def _window(raw: str | None) -> float:
    """The measurements window in seconds: finite, above zero, at most a year."""
    try:
        window = float(raw if raw is not None else "60")
    except ValueError:
        raise ValueError("window: expected seconds") from None
    if not math.isfinite(window) or not 0 < window <= MAX_WINDOW_S:
        raise ValueError(f"window: expected seconds, more than 0 and at most {MAX_WINDOW_S:g}")
    return window


def _outputs_json(array: np.ndarray) -> Any:
    return array.tolist() if array.dtype == object else array


def create_app(config: GatewayConfig | None = None) -> Starlette:
    """The gateway app. Without a config it reads `MLOPS_GATEWAY_CONFIG` (set by `mlops serve`)."""
    cfg = config or GatewayConfig.from_env()
    holder: dict[str, Gateway] = {}

    def gw() -> Gateway:
        return holder["gateway"]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        gateway = Gateway(cfg)
        holder["gateway"] = gateway
        app.state.gateway = gateway
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    def route_of(name: str) -> DeploymentRoute | None:
        return gw().table.deployments.get(name)

    async def serve(request: Request, protocol: str) -> Response:
        gateway = gw()
        name = request.path_params["name"]
        route = route_of(name)
        if route is None:
            return _error(f"deployment {name!r} not found", 404)
        request_id = _request_id(request)
        started = time.perf_counter()
        key = request.headers.get("x-routing-key")
        draw = random.random()
        pinned = request.path_params.get("version")
        role = "live"
        if pinned is None:
            target = route.targets[route.split.pick(key, draw)]
        else:
            # Asked for by version, not routed: measured apart, never judged.
            role = "pinned"
            found = _pinned_target(route, pinned)
            if found is None:
                return _error(f"no release of {name!r} serves version {pinned[:20]!r}", 404)
            target = found
        headers = {
            "x-request-id": request_id,
            "x-model-version": target.pipeline.primary.label,
            "x-release-revision": str(target.revision),
            "x-components": target.pipeline.labels,
        }
        try:
            body = await _body(request, gateway.config.max_body_bytes)
        except _TooLarge:
            _record(gateway, target, started, REFUSED, None, request_id, role)
            return _error(
                f"request body larger than {gateway.config.max_body_bytes} bytes",
                413,
                headers | CLOSES,
            )
        try:
            decode = decode_v1 if protocol == "v1" else decode_v2
            args = (body, decode, target.pipeline.signature, gateway.config.max_batch_rows)
            if len(body) > PARSE_OFF_LOOP_BYTES:
                data, decoded = await asyncio.to_thread(_parse, *args)
            else:
                data, decoded = _parse(*args)
        except orjson.JSONDecodeError as exc:
            _record(gateway, target, started, REFUSED, None, request_id, role)
            return _error(f"body is not valid JSON: {exc}", 400, headers)
        except PayloadError as exc:
            _record(gateway, target, started, REFUSED, None, request_id, role)
            return _error(exc.message, 400, headers)
        if role == "live":
            for shadow_rev in route.split.shadow_targets(key, draw):
                shadow = route.targets.get(shadow_rev)
                if shadow is not None:
                    _spawn_shadow(gateway, route, shadow, decoded, request_id)
        outputs, failure = await _predict(gateway, target, decoded, request_id)
        if failure is not None:
            if role == "live":
                failure = await _blame(gateway, route, target, decoded, failure)
            kind, status, message = failure
            _record(gateway, target, started, kind, None, request_id, role)
            extra = {"retry-after": "1"} if status == 503 else {}
            return _error(message, status, {**headers, **extra})
        assert outputs is not None
        _record(gateway, target, started, None, outputs, request_id, role)
        if protocol == "v1":
            return _json({"predictions": _outputs_json(outputs)}, headers=headers)
        request_tag = data.get("id") if isinstance(data, dict) else None
        return _json(
            {
                "model_name": name,
                "model_version": str(target.pipeline.primary.record.version),
                "id": request_tag if isinstance(request_tag, str) else request_id,
                "outputs": [
                    {
                        "name": decoded.output_name,
                        "datatype": v2_datatype(outputs),
                        "shape": list(outputs.shape),
                        "data": _outputs_json(outputs.reshape(-1)),
                    }
                ],
            },
            headers=headers,
        )

    async def v1_predict(request: Request) -> Response:
        return await serve(request, "v1")

    async def v2_infer(request: Request) -> Response:
        return await serve(request, "v2")

    async def v1_model(request: Request) -> Response:
        route = route_of(request.path_params["name"])
        if route is None:
            return _error(f"deployment {request.path_params['name']!r} not found", 404)
        return _json({"name": route.name, "ready": True, "revision": route.stable_revision})

    async def v1_models(request: Request) -> Response:
        return _json({"models": sorted(gw().table.deployments)})

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        gateway = gw()
        if gateway.ready:
            return _json({"ready": True})
        return _json({"ready": False, "failures": gateway.table.failures}, 503)

    async def server_metadata(request: Request) -> Response:
        return _json({"name": "mlops", "version": __version__, "extensions": []})

    async def model_metadata(request: Request) -> Response:
        name = request.path_params["name"]
        route = route_of(name)
        if route is None:
            return _error(f"deployment {name!r} not found", 404)
        target = (
            route.targets[route.stable_revision]
            if route.stable_revision in route.targets
            else next(iter(route.targets.values()))
        )
        signature = target.pipeline.signature
        return _json(
            {
                "name": name,
                "versions": sorted(
                    {str(t.pipeline.primary.record.version) for t in route.targets.values()}
                ),
                "platform": target.pipeline.primary.record.flavor,
                "inputs": [
                    {"name": spec.name, "datatype": _v2_type(spec.dtype), "shape": list(spec.shape)}
                    for spec in signature.inputs
                ],
                "outputs": [
                    {"name": spec.name, "datatype": _v2_type(spec.dtype), "shape": list(spec.shape)}
                    for spec in target.pipeline.output_signature.outputs
                ],
            }
        )

    async def model_ready(request: Request) -> Response:
        name = request.path_params["name"]
        if route_of(name) is None:
            return _error(f"deployment {name!r} not found", 404)
        return _json({"name": name, "ready": True})

    async def feedback(request: Request) -> Response:
        gateway = gw()
        name = request.path_params["name"]
        route = route_of(name)
        if route is None:
            return _error(f"deployment {name!r} not found", 404)
        if not gateway.may_label(route.id):
            return _error(f"too many labels for {name!r}; retry later", 429, {"retry-after": "1"})
        expected = 'body: expected {"request_id": "...", "label": ...}'
        try:
            data = orjson.loads(await _body(request, LABEL_BODY_MAX))
        except _TooLarge:
            return _error(f"a label's body is at most {LABEL_BODY_MAX} bytes", 413, CLOSES)
        except orjson.JSONDecodeError:
            return _error(expected, 400)
        if not isinstance(data, dict) or "label" not in data:
            return _error(expected, 400)
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= REQUEST_ID_MAX:
            return _error("request_id: expected the X-Request-Id of a served request", 400)
        problem = _label_problem(data["label"])
        if problem is not None:
            return _error(f"label: {problem}", 400)
        outcome = await _add_label(gateway, route.id, request_id, data["label"])
        if outcome == "duplicate":
            return _error(f"request {request_id!r} is labelled already; a label is kept", 409)
        if outcome == "unserved":
            return _error(f"{name!r} logged no answer to request {request_id!r}", 404)
        gateway.recorder.labelled(name)
        return _json({"accepted": True, "request_id": request_id}, 202)

    async def measurements(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            window = _window(request.query_params.get("window"))
        except ValueError as exc:
            return _error(str(exc), 400)
        try:
            found = await asyncio.get_running_loop().run_in_executor(
                None, lambda: gw().service.measurements(name, window_s=window)
            )
        except MlopsError as exc:
            return _error(exc.message, exc.http_status)
        return _json(
            {"deployment": name, "window_s": window, "revisions": [m.to_dict() for m in found]}
        )

    async def gateway_status(request: Request) -> Response:
        gateway = gw()
        table = gateway.table
        return _json(
            {
                "worker": gateway.config.worker,
                "seq": table.seq,
                "ready": gateway.ready,
                "rss_bytes": _rss_bytes(),
                "loaded_versions": gateway.loader.loaded_labels(),
                "failures": table.failures,
                "deployments": {
                    name: {
                        "stable_revision": route.stable_revision,
                        "split": route.split.to_dict(),
                        "targets": {
                            str(rev): {
                                "components": target.pipeline.labels,
                                "queued_rows": target.batcher.queued_rows,
                                "batches": target.batcher.batches,
                                "rows": target.batcher.rows,
                            }
                            for rev, target in route.targets.items()
                        },
                    }
                    for name, route in table.deployments.items()
                },
            }
        )

    async def metrics(request: Request) -> Response:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            REGISTRY,
            CollectorRegistry,
            generate_latest,
        )

        registry = REGISTRY
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/v1/models", v1_models, methods=["GET"]),
        Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
        Route("/v1/models/{name}", v1_model, methods=["GET"]),
        Route("/v1/feedback/{name}", feedback, methods=["POST"]),
        Route("/v1/measurements/{name}", measurements, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", v2_infer, methods=["POST"]),
        Route("/v1/gateway", gateway_status, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Guard, body_timeout_s=cfg.body_timeout_s)],
        exception_handlers={HTTPException: _http_error},
    )


def _label_problem(label: Any) -> str | None:
    """Why a delayed label cannot be kept, or None: a label is a class or a finite number."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int | float):
        if not math.isfinite(label) or abs(label) > LABEL_NUMBER_MAX:
            return f"a number within ±{LABEL_NUMBER_MAX:.0f} (2**53)"
        return None
    if isinstance(label, str):
        return None if 0 < len(label) <= LABEL_TEXT_MAX else f"1 to {LABEL_TEXT_MAX} characters"
    return "expected a class (text, a number or true/false)"


async def _add_label(gateway: Gateway, deployment_id: int, request_id: str, label: Any) -> str:
    """Keep the label if the deployment answered the request. Answers reach the store about
    once a flush interval; a label that comes sooner waits for them, a bounded while."""
    loop = asyncio.get_running_loop()
    if gateway.recorder.pending(deployment_id, request_id):
        await loop.run_in_executor(None, gateway.recorder.flush)
    deadline = time.monotonic() + 2 * gateway.config.flush_interval_s
    while True:
        outcome: str = await loop.run_in_executor(
            None, gateway.service.add_label, deployment_id, request_id, label
        )
        if outcome != "unserved" or time.monotonic() >= deadline:
            return outcome
        await asyncio.sleep(LABEL_POLL_S)


def _rss_bytes() -> int:
    """This worker's resident memory, from /proc (0 where there is no /proc)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _v2_type(dtype: str) -> str:
    from mlops.core.payload import NUMPY_TO_V2

    return NUMPY_TO_V2.get(dtype, "BYTES")


def _pinned_target(route: DeploymentRoute, version: str) -> Target | None:
    """The routed release that serves `version` of the primary model, the stable one first."""
    if not (version.isascii() and version.isdigit() and len(version) <= 18):
        return None
    serving = [
        t for t in route.targets.values() if t.pipeline.primary.record.version == int(version)
    ]
    return next((t for t in serving if t.revision == route.stable_revision), None) or next(
        iter(serving), None
    )


Failure = tuple[str, int, str]
"""(error kind, HTTP status, message for the client)."""


async def _blame(
    gateway: Gateway, route: DeploymentRoute, target: Target, decoded: Decoded, failure: Failure
) -> Failure:
    """The failure as counted: the input's (refused) when the release this one is compared with
    fails on the same rows too, else as it was."""
    if not needs_reference(failure[0]):
        return failure
    reference_rev = reference_revision(route.split, route.stable_revision, target.revision)
    reference = route.targets.get(reference_rev) if reference_rev is not None else None
    if reference is None:
        return failure
    _, reference_failure = await _predict(gateway, reference, decoded, None)
    failed = reference_failure is not None and needs_reference(reference_failure[0])
    kind = assess_fault(failure[0], failed)
    if kind == failure[0]:
        return failure
    return (
        kind,
        422,
        f"this input cannot be served: revision {reference.revision} fails on it too",
    )


async def _predict(
    gateway: Gateway, target: Target, decoded: Decoded, request_id: str | None
) -> tuple[np.ndarray | None, Failure | None]:
    try:
        future = target.batcher.submit(decoded.rows)
    except Overloaded as exc:
        return None, ("rejected", 503, f"{target.deployment} is overloaded ({exc}); retry later")
    try:
        outputs = await asyncio.wait_for(asyncio.shield(future), gateway.config.timeout_s)
    except TimeoutError:
        return None, (
            "timeout",
            504,
            f"the model did not answer within {gateway.config.timeout_s:g} s",
        )
    except UnknownKey as exc:
        return None, ("rejected", exc.http_status, str(exc))
    except Exception as exc:
        if request_id is not None:
            gateway.log_failure(target, request_id, exc)
        return None, ("exception", 500, "the model failed on this request (see the gateway log)")
    problem = invalid_output(outputs)
    if problem is not None:
        return None, ("invalid_output", 500, problem)
    return outputs, None


def _record(
    gateway: Gateway,
    target: Target,
    started: float,
    error: str | None,
    outputs: np.ndarray | None,
    request_id: str,
    role: str = "live",
) -> None:
    gateway.recorder.record(
        deployment_id=target.deployment_id,
        deployment=target.deployment,
        revision=target.revision,
        version=target.pipeline.primary.label,
        role=role,
        latency_ms=(time.perf_counter() - started) * 1000.0,
        error=error,
        outputs=outputs,
        output_kind=target.pipeline.output_kind,
        request_id=request_id,
    )


def _spawn_shadow(
    gateway: Gateway, route: DeploymentRoute, target: Target, decoded: Decoded, request_id: str
) -> None:
    async def run() -> None:
        started = time.perf_counter()
        outputs, failure = await _predict(gateway, target, decoded, request_id)
        if failure is not None:
            failure = await _blame(gateway, route, target, decoded, failure)
        _record(
            gateway, target, started, failure[0] if failure else None, outputs, request_id, "shadow"
        )

    task = asyncio.get_running_loop().create_task(run())
    gateway._shadow_tasks.add(task)
    task.add_done_callback(gateway._shadow_tasks.discard)
