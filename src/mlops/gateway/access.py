"""Tokens on the data plane: delayed labels always need one with the `feedback` scope;
predictions need one with the `predict` scope only when `mlops serve --predict-token` asks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mlops.core.access import Need
from mlops.errors import AccessDenied
from mlops.gateway.http import error
from mlops.gateway.state import Gateway
from mlops.web.access import check, refusal_headers


async def refused(
    request: Request, gateway: Gateway, need: Need, deployment: str
) -> Response | None:
    """The answer to a caller who may not do this on `deployment`; None for one who may."""
    try:
        await check(
            request,
            gateway.authenticator,
            gateway.trusted_proxies,
            need,
            deployment,
            body_limit=gateway.config.max_body_bytes,
        )
    except AccessDenied as exc:
        return error(exc.message, exc.http_status, refusal_headers(exc))
    return None
