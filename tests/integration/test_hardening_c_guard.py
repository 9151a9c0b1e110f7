"""The gateway's Guard around an app that fails in ways no route of the real gateway is known to
fail any more (issue 10, finding 14): the client gets a generic JSON 500 with the request id,
never the exception's text; the log gets the text, with the request id, at WARNING."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlops.gateway.guard import Guard


async def crash(request: Request) -> Response:
    raise RuntimeError("/srv/models/secret.db is locked")


def test_an_unexpected_exception_is_a_generic_json_500(caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette(routes=[Route("/crash", crash)], middleware=[Middleware(Guard)])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def ask() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            first = await http.get("/crash", headers={"x-request-id": "req-7"})
            return first, await http.get("/crash")

    with caplog.at_level(logging.WARNING, logger="mlops.gateway"):
        response, second = asyncio.run(ask())
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "internal error; request id req-7"}
    assert response.headers["x-request-id"] == "req-7"
    assert second.status_code == 500
    assert "secret" not in second.text
    logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == 1, "the second failure of the same kind is rate limited"
    assert "req-7" in logged[0].getMessage()
    assert "secret.db is locked" in logged[0].getMessage()
