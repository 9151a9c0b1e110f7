"""The control API's ASGI app: the operations under `/api/v1`, their OpenAPI document, and
problem+json for every error, inside the same `Guard` as the gateway; and the dashboard under
`/ui/`, on the same state (service, authenticator)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mlops.api.auth import Control
from mlops.api.openapi import document
from mlops.api.operations import OPERATIONS, VERSION
from mlops.api.problems import http_error, mlops_error
from mlops.api.upload import upload_path
from mlops.core.access import parse_networks
from mlops.errors import MlopsError
from mlops.gateway.config import GatewayConfig
from mlops.gateway.guard import Guard
from mlops.gateway.http import json_response
from mlops.service import Service
from mlops.service.sso import authenticator_for
from mlops.settings import load_settings


async def openapi(request: Request) -> Response:
    return json_response(document())


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


def routes() -> list[BaseRoute]:
    from mlops.dashboard.pages import routes as dashboard_routes

    out: list[BaseRoute] = [
        Route(f"{VERSION}/openapi.json", openapi, methods=["GET"]),
        Route(f"{VERSION}/health", health, methods=["GET"]),
    ]
    out += [Route(VERSION + op.path, op.handler, methods=[op.method]) for op in OPERATIONS]
    return out + dashboard_routes()


def create_api(config: GatewayConfig) -> Starlette:
    """The control API, to be mounted at `MOUNT` (`mlops.serving`): beside the gateway, or
    alone on a control-plane host (`mlops serve --no-gateway`)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service = Service(load_settings(home=config.home, store_url=config.store))
        app.state.control = Control(
            service,
            authenticator_for(service, config.sso()),
            parse_networks(config.trusted_proxies),
            max_upload_bytes=config.max_upload_bytes,
        )
        try:
            yield
        finally:
            service.close()

    return Starlette(
        routes=routes(),
        lifespan=lifespan,
        middleware=[Middleware(Guard, body_timeout_s=config.body_timeout_s, paced=upload_path)],
        exception_handlers={MlopsError: mlops_error, HTTPException: http_error},
    )
