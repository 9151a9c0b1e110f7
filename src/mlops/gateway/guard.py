"""The middleware around every route of the gateway (`Guard`)."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops.errors import BodyTooSlow
from mlops.gateway.http import error, given_request_id
from mlops.ratelog import RateLimitedLog

log = logging.getLogger("mlops.gateway")
unexpected_log = RateLimitedLog(log)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Guard:
    """Around every route: a request id for each request, paths with control characters
    refused, a deadline for the body, quiet client disconnects, and any unexpected exception
    turned into a generic JSON 500 (logged with the request id, never shown to the client)."""

    def __init__(
        self,
        app: ASGIApp,
        body_timeout_s: float = 10.0,
        paced: Callable[[str], bool] | None = None,
    ) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.paced = paced
        """Paths whose handler paces its own body (an upload), free of the whole-body
        deadline."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given_request_id(given) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        if _CONTROL.search(path):
            response = error("path: control characters are not allowed", 400)
            await response(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            paced = self.paced is not None and self.paced(path)
            await self.app(scope, receive if paced else self._timed(receive), watched)
        except ClientDisconnect:
            log.debug("request %s: the client disconnected before the answer", request_id)
        except BodyTooSlow:
            log.debug("request %s: body not received within the body timeout", request_id)
            if not started:
                message = f"request body not received within {self.body_timeout_s:g} s"
                headers_out = {"x-request-id": request_id, "connection": "close"}
                await error(message, 408, headers_out)(scope, receive, send)
        except Exception as exc:
            unexpected_log.log(
                logging.WARNING,
                type(exc).__name__,
                "request %s (%s %s) failed: %s: %s",
                request_id,
                scope.get("method"),
                path,
                type(exc).__name__,
                exc,
            )
            if not started:
                message = f"internal error; request id {request_id}"
                await error(message, 500, {"x-request-id": request_id})(scope, receive, send)

    def _timed(self, receive: Receive) -> Receive:
        """`receive`, raising BodyTooSlow when the whole body takes longer than the timeout."""
        deadline: float | None = None
        complete = False

        async def timed() -> Message:
            nonlocal deadline, complete
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.body_timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow("the body was not received in time") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        return timed
