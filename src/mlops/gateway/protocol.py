"""uvicorn's httptools protocol with what it lacks against slow or many clients: a client
has `body_timeout_s` to send a request's headers (from connecting, or from the first byte of
the next request on a kept-alive connection); a connection whose answer went out before its
body was read (413, 408, 503) is closed rather than left to trickle; past `limit_concurrency`
open connections (or requests in progress) a request is answered 503 in JSON at once, and past
twice that many connections a new one is closed unanswered. The body's own deadline is the
gateway's (`Guard`), which answers 408."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mlops.ratelog import RateLimitedLog

log = RateLimitedLog(logging.getLogger("mlops.gateway"))

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_LIMIT = 1024
_TOO_SLOW = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: 48\r\nconnection: close\r\n\r\n"
    b'{"error":"request headers not received in time"}'
)


def _settings() -> tuple[float, int]:
    from mlops.gateway.config import CONFIG_ENV

    config = json.loads(os.environ.get(CONFIG_ENV) or "{}")
    return (
        float(config.get("body_timeout_s", DEFAULT_TIMEOUT_S)),
        int(config.get("limit_concurrency", DEFAULT_LIMIT)),
    )


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    body = b'{"error":"too many connections; retry later"}'
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    timeout_s: float | None = None
    limit: int = DEFAULT_LIMIT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if GuardedHttpToolsProtocol.timeout_s is None:
            GuardedHttpToolsProtocol.timeout_s, GuardedHttpToolsProtocol.limit = _settings()
        self._headers_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > 2 * self.limit:
            # Far past the limit a connection is closed at once, unanswered: open sockets,
            # and so file descriptors, stay bounded whatever a client opens.
            transport.close()
            return
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        if len(self.connections) > self.limit or len(self.tasks) >= self.limit:
            log.log(
                logging.WARNING,
                "overloaded",
                "%d connections and %d requests open, the limit is %d: answering 503",
                len(self.connections),
                len(self.tasks),
                self.limit,
            )
            app, self.app = self.app, _overloaded
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        unread = self.cycle is not None and self.cycle.more_body and not self.pipeline
        super().on_response_complete()
        if unread and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(
                self.timeout_s or DEFAULT_TIMEOUT_S, self._headers_too_slow
            )

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_too_slow(self) -> None:
        self._headers_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_TOO_SLOW)
        self.transport.close()
