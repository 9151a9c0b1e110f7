"""Who an HTTP request comes from, and whether it may (`check`): its bearer token checked by
the worker's `Authenticator`, which records and counts each refusal. Shared by the control
API and the gateway (delayed labels, and predictions when they need a token)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from mlops.core.access import Identity, IPNetwork, Need, client_address
from mlops.errors import AccessDenied, MlopsError, TooManyAttempts, Unauthenticated
from mlops.service.authn import Attempt, Authenticator
from mlops.web.body import drained

PATH_SHOWN = 256


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def attempt_of(request: Request, trusted: tuple[IPNetwork, ...], deployment: str | None) -> Attempt:
    peer = request.client.host if request.client else None
    client = client_address(peer, request.headers.get("x-forwarded-for"), trusted)
    return Attempt(request.method, request.url.path[:PATH_SHOWN], client, deployment)


async def check(
    request: Request,
    authenticator: Authenticator,
    trusted: tuple[IPNetwork, ...],
    need: Need,
    deployment: str | None,
    *,
    body_limit: int,
) -> Identity:
    """The caller's identity if it may do what needs `need` (on `deployment`); else the
    refusal, recorded, is raised once the body (up to `body_limit` bytes) is in, so that the
    answer is not lost with a connection closed under it. A token checked lately costs neither
    the store nor a thread."""
    secret = bearer(request.headers.get("authorization"))
    known = authenticator.allowed_cached(secret, need, deployment)
    if known is not None:
        return known
    attempt = attempt_of(request, trusted, deployment)
    try:
        identity: Identity = await run_in_threadpool(authenticator.authorize, secret, need, attempt)
    except AccessDenied:
        await drained(request, body_limit)
        raise
    return identity


def refusal_headers(exc: MlopsError) -> dict[str, str]:
    """What an answer to a refused request says beside its status: how to authenticate
    (401), or how long to wait (429)."""
    if isinstance(exc, TooManyAttempts):
        return {"retry-after": str(max(1, round(exc.retry_after)))}
    if isinstance(exc, Unauthenticated):
        return {"www-authenticate": 'Bearer realm="mlops"'}
    return {}
