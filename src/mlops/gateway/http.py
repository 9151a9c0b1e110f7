"""What every HTTP handler of the gateway shares: JSON answers, bodies read within a bound,
and the request id."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mlops.errors import BodyTooLarge

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


def declared_over(request: Request, limit: int) -> bool:
    """Whether the body's declared length (Content-Length) passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    return declared.isascii() and declared.isdigit() and int(declared) > limit


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it is known to pass `limit` bytes."""
    if declared_over(request, limit):
        raise BodyTooLarge(f"the body is larger than {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def drained(request: Request, limit: int) -> None:
    """Read and drop the body (at most `limit` bytes) before an early answer (404, 401): a
    connection closed while its body is still arriving is reset, and the answer can be lost
    with it. A body past `limit` is left to the protocol, which closes its connection."""
    with contextlib.suppress(BodyTooLarge):
        await read_body(request, limit)


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
