"""The `Notifier` plug point: one role, `send(notification)`, and the one error it raises."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mlops.errors import DeliveryFailed as DeliveryFailed
from mlops.notify.alert import Notification


@runtime_checkable
class Notifier(Protocol):
    """Delivers one notification, or raises `DeliveryFailed` saying why it could not.

    `send` returns only once the receiver has accepted the notification (for HTTP, a 2xx),
    and must return or fail within a bounded time (the outbox's lease assumes a few seconds).
    """

    def send(self, message: Notification) -> None: ...
