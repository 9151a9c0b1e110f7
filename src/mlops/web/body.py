"""Request bodies, as both HTTP faces read them: whole within a bound, or drained before an
early answer."""

from __future__ import annotations

import contextlib

from starlette.requests import Request

from mlops.errors import BodyTooLarge


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
    # RuntimeError: the handler read the body already (a refusal after it): nothing is left.
    with contextlib.suppress(BodyTooLarge, RuntimeError):
        await read_body(request, limit)
