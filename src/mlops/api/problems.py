"""Errors as `application/problem+json` (RFC 9457), with the kind and exit code the CLI gives."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from mlops.errors import MlopsError
from mlops.web.access import refusal_headers

PROBLEM = "application/problem+json"


def problem(
    status: int, kind: str, detail: str, *, exit_code: int, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:mlops:error:{kind}",
        "title": kind,
        "status": status,
        "detail": detail,
        "kind": kind,
        "exit_code": exit_code,
    }
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM)


def from_error(exc: MlopsError) -> Response:
    headers = refusal_headers(exc)
    return problem(
        exc.http_status, type(exc).__name__, exc.message, exit_code=exc.exit_code, headers=headers
    )


async def mlops_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MlopsError)
    return from_error(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    kind, exit_code = {404: ("NotFound", 3), 405: ("MethodNotAllowed", 2)}.get(
        exc.status_code, ("HTTPError", 1)
    )
    return problem(exc.status_code, kind, str(exc.detail), exit_code=exit_code)
