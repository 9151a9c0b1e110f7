"""The gateway's ASGI app: KServe V1 and V2 (Open Inference Protocol), feedback, measurements,
metrics, each route to its handler, inside `Guard`."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from mlops.gateway import feedback, inference, status
from mlops.gateway.config import GatewayConfig
from mlops.gateway.guard import Guard
from mlops.gateway.http import http_error
from mlops.gateway.state import CompanionFactory, Gateway

ROUTES = [
    Route("/v1/models", status.v1_models, methods=["GET"]),
    Route("/v1/models/{name}:predict", inference.v1_predict, methods=["POST"]),
    Route("/v1/models/{name}", status.v1_model, methods=["GET"]),
    Route("/v1/feedback/{name}", feedback.feedback, methods=["POST"]),
    Route("/v1/measurements/{name}", status.measurements, methods=["GET"]),
    Route("/v2", status.server_metadata, methods=["GET"]),
    Route("/v2/health/live", status.live, methods=["GET"]),
    Route("/v2/health/ready", status.ready, methods=["GET"]),
    Route("/v2/models/{name}", inference.model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/ready", status.model_ready, methods=["GET"]),
    Route("/v2/models/{name}/infer", inference.v2_infer, methods=["POST"]),
    Route("/v2/models/{name}/versions/{version}/infer", inference.v2_infer, methods=["POST"]),
    Route("/v2/models/{name}/versions/{version}", inference.model_metadata, methods=["GET"]),
    Route("/v2/models/{name}/versions/{version}/ready", status.model_ready, methods=["GET"]),
    Route("/v1/gateway", status.gateway_status, methods=["GET"]),
    Route("/v1/gateway/serving", status.serving, methods=["GET"]),
    Route("/metrics", status.metrics, methods=["GET"]),
]


def create_app(
    config: GatewayConfig | None = None, companion: CompanionFactory | None = None
) -> Starlette:
    """The gateway app. Without a config it reads `MLOPS_GATEWAY_CONFIG` (set by `mlops serve`).
    A `companion` (the rollout controller, see `mlops.serving`) runs beside it in the worker."""
    cfg = config or GatewayConfig.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The recorder's flush thread must not hold the event loop off for the default 5 ms
        # at a time: a waiting thread gets the GIL after 1 ms (docs/benchmarks.md, "Tail latency").
        sys.setswitchinterval(0.001)
        gateway = Gateway(cfg, companion)
        app.state.gateway = gateway
        await gateway.start()
        grpc = None
        if cfg.grpc_port is not None:
            from mlops.gateway.grpc_server import GrpcServer

            tls = (cfg.tls_cert, cfg.tls_key) if cfg.tls_cert and cfg.tls_key else None
            grpc = GrpcServer(gateway, cfg.grpc_host, cfg.grpc_port, tls)
            await grpc.start()
        try:
            yield
        finally:
            if grpc is not None:
                await grpc.stop()
            await gateway.stop()

    return Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[Middleware(Guard, body_timeout_s=cfg.body_timeout_s)],
        exception_handlers={HTTPException: http_error},
    )
