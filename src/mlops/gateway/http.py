"""What every HTTP handler of the gateway shares: JSON answers and the request id (bodies are
read by `mlops.web.body`)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

REQUEST_ID_MAX = 64

CLOSES = {"connection": "close"}
"""The body was left unread and the socket is closed after the answer (protocol.py); saying
so keeps a client from sending its next request on it."""


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.detail, exc.status_code, dict(exc.headers or {}))


def given_request_id(value: str | None) -> str | None:
    """A client's X-Request-Id when it is short and printable, else None."""
    if value and len(value) <= REQUEST_ID_MAX and value.isprintable():
        return value
    return None


def request_id(request: Request) -> str:
    """The id `Guard` gave the request: the client's own when usable, else a new one."""
    known = request.scope.get("state", {}).get("request_id")
    if isinstance(known, str):
        return known
    return given_request_id(request.headers.get("x-request-id")) or uuid.uuid4().hex
