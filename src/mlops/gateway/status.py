"""The status handlers: health and readiness, server and deployment listings, this worker's
state, measurements by revision, and Prometheus metrics."""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mlops import __version__
from mlops.errors import MlopsError
from mlops.gateway.http import error, json_response
from mlops.gateway.prediction import pinned_target
from mlops.gateway.routes import DeploymentRoute
from mlops.gateway.state import Gateway

MAX_WINDOW_S = 366 * 24 * 3600.0


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def live(request: Request) -> Response:
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    gateway = _gateway(request)
    if gateway.ready:
        return json_response({"ready": True})
    return json_response({"ready": False, "failures": gateway.table.failures}, 503)


async def serving(request: Request) -> Response:
    """For a load balancer's health check: whether this worker can serve, not whether every
    deployment can. 503 until its route table is loaded, and while none of the deployments it
    knows has routes; one broken deployment (see `/v2/health/ready`) drains no host."""
    gateway = _gateway(request)
    table = gateway.table
    body = {
        "serving": table.seq >= 0 and (bool(table.deployments) or not table.failures),
        "deployments": len(table.deployments),
        "failures": table.failures,
        "store_cut_off": gateway.watcher.cut_off,
    }
    return json_response(body, 200 if body["serving"] else 503)


async def server_metadata(request: Request) -> Response:
    return json_response({"name": "mlops", "version": __version__, "extensions": []})


async def v1_models(request: Request) -> Response:
    return json_response({"models": sorted(_gateway(request).table.deployments)})


async def v1_model(request: Request) -> Response:
    name = request.path_params["name"]
    route = _gateway(request).table.deployments.get(name)
    if route is None:
        return error(f"deployment {name!r} not found", 404)
    return json_response({"name": route.name, "ready": True, "revision": route.stable_revision})


async def model_ready(request: Request) -> Response:
    name = request.path_params["name"]
    route = _gateway(request).table.deployments.get(name)
    if route is None:
        return error(f"deployment {name!r} not found", 404)
    version = request.path_params.get("version")
    if version is not None:
        if pinned_target(route, version) is None:
            return error(f"deployment {name!r} serves no version {version!r}", 404)
        return json_response({"name": name, "version": version, "ready": True})
    return json_response({"name": name, "ready": True})


async def gateway_status(request: Request) -> Response:
    gateway = _gateway(request)
    table = gateway.table
    return json_response(
        {
            "worker": gateway.config.worker,
            "seq": table.seq,
            "ready": gateway.ready,
            "store": {
                "cut_off": gateway.watcher.cut_off,
                "silent_s": round(time.monotonic() - gateway.watcher.last_contact, 3),
            },
            "rss_bytes": _rss_bytes(),
            "loaded_versions": gateway.loader.loaded_labels(),
            "failures": table.failures,
            "deployments": {
                name: _route_status(route) for name, route in table.deployments.items()
            },
        }
    )


def _route_status(route: DeploymentRoute) -> dict[str, Any]:
    return {
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


async def measurements(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        window = _window(request.query_params.get("window"))
    except ValueError as exc:
        return error(str(exc), 400)
    service = _gateway(request).service
    try:
        found = await asyncio.get_running_loop().run_in_executor(
            None, lambda: service.measurements(name, window_s=window)
        )
    except MlopsError as exc:
        return error(exc.message, exc.http_status)
    return json_response(
        {"deployment": name, "window_s": window, "revisions": [m.to_dict() for m in found]}
    )


def _window(raw: str | None) -> float:
    """The measurements window in seconds: finite, above zero, at most a year."""
    try:
        window = float(raw if raw is not None else "60")
    except ValueError:
        raise ValueError("window: expected seconds") from None
    if not math.isfinite(window) or not 0 < window <= MAX_WINDOW_S:
        raise ValueError(f"window: expected seconds, more than 0 and at most {MAX_WINDOW_S:g}")
    return window


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


def _rss_bytes() -> int:
    """This worker's resident memory, from /proc (0 where there is no /proc)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
