"""Who a dashboard request comes from: the session its cookie names (signed in with a token,
or made from the JWT an authenticating proxy forwards), and the checks every change must
pass: the session's CSRF secret in the form, and a same-origin request."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from mlops.api.auth import control
from mlops.core.access import Identity
from mlops.errors import Forbidden, Unauthenticated
from mlops.service.sessions import WebSession
from mlops.web.access import attempt_of, bearer

COOKIE = "mlops_session"
PATH = "/ui"


async def current(request: Request, *, create: bool = True) -> tuple[WebSession, str | None]:
    """The request's session, and a new cookie secret when one was made just now from the
    JWT a proxy forwarded; Unauthenticated when there is neither. A session is made only for
    a browser's navigation (`create`, and `Sec-Fetch-Mode: navigate`): any other request
    with a bearer and no cookie (a live stream, a script) is served as that bearer's
    identity, with no session stored and no CSRF token (so it can change nothing)."""
    state = control(request)
    secret = request.cookies.get(COOKIE)
    forwarded = bearer(request.headers.get("authorization"))
    if secret:
        try:
            session: WebSession = await run_in_threadpool(state.service.session, secret)
        except Unauthenticated:
            if forwarded is None:
                raise
        else:
            if forwarded is None or await _same_caller(request, forwarded, session):
                return session, None
    if forwarded is None:
        raise Unauthenticated("not signed in")
    if create and request.headers.get("sec-fetch-mode") == "navigate":
        return await sign_in(request, forwarded)
    return WebSession(0, await _authorized(request, forwarded), "", datetime.now(UTC)), None


async def _same_caller(request: Request, forwarded: str, session: WebSession) -> bool:
    """Whether the JWT a proxy forwards is the session's caller (else a new session)."""
    return (await _authorized(request, forwarded)).label() == session.identity.label()


async def _authorized(request: Request, secret: str) -> Identity:
    """Who a presented token or JWT stands for, if it may read (the cached check)."""
    state = control(request)
    known = state.authenticator.allowed_cached(secret, "read", None)
    if known is not None:
        return known
    attempt = attempt_of(request, state.trusted_proxies, None)
    who: Identity = await run_in_threadpool(state.authenticator.authorize, secret, "read", attempt)
    return who


async def sign_in(request: Request, secret: str) -> tuple[WebSession, str]:
    """A session for a presented token or JWT; the authenticator counts and records a wrong
    one, and refuses an address that failed too often."""
    who = await _authorized(request, secret)
    made, session = await run_in_threadpool(control(request).service.start_session, who)
    return session, made


def set_cookie(response: Response, request: Request, secret: str, session: WebSession) -> None:
    left = (session.expires_at - datetime.now(UTC)).total_seconds()
    response.set_cookie(
        COOKIE,
        secret,
        max_age=max(1, int(left)),
        path=PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """Whether a browser says the request comes from a page of this server. A request with
    neither header (not from a browser) is judged by its CSRF secret alone."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin == own


def check_change(request: Request, session: WebSession, sent: str | None) -> None:
    """Refuse a change that another site's page could have sent."""
    if not same_origin(request):
        raise Forbidden("cross-origin request refused")
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page")
