"""`WebhookNotifier`: POST the notification as JSON, signed with HMAC-SHA256 like GitHub's.

Headers sent with each POST:

    Content-Type: application/json
    X-Mlops-Event: rolled_back                  the alert's kind
    X-Mlops-Delivery: 17                        the outbox row: the same on every resend
    X-Mlops-Signature: sha256=<hex>             HMAC-SHA256 of the exact body (with a secret)

Any 2xx answer is a delivery; anything else (another status, a refused connection, a
timeout) raises `DeliveryFailed` and the outbox tries again later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING

from mlops.notify._http import DEFAULT_TIMEOUT_S, HttpNotifier, post
from mlops.notify.alert import Notification

if TYPE_CHECKING:
    import httpx

SIGNATURE_HEADER = "X-Mlops-Signature"
DELIVERY_HEADER = "X-Mlops-Delivery"
EVENT_HEADER = "X-Mlops-Event"


def encode(message: Notification) -> bytes:
    """The exact bytes POSTed (and signed): compact UTF-8 JSON."""
    return json.dumps(message.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, secret: str) -> str:
    """The `X-Mlops-Signature` value for a body: `sha256=` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """Whether `header` is the signature of `body` with `secret` (in constant time)."""
    if header is None:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), header.encode("utf-8", "replace"))


class WebhookNotifier(HttpNotifier):
    """Delivers to an HTTP endpoint; signs each body when a secret is given."""

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, timeout=timeout, transport=transport)
        self._secret = secret or None

    def send(self, message: Notification) -> None:
        body = encode(message)
        headers = {EVENT_HEADER: message.alert.kind, DELIVERY_HEADER: str(message.id)}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        post(self._client, self.url, body, headers)
