"""The `Notifier` plug point: one role, `send(notification)`, and the one error it raises."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mlops.errors import DependencyFailed
from mlops.notify.alert import Notification


class DeliveryFailed(DependencyFailed):
    """A notification did not reach its receiver; the outbox will try again later.

    `retry_after` (seconds) is the receiver's own request to wait (an HTTP `Retry-After`);
    the outbox waits at least that long, within its cap.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@runtime_checkable
class Notifier(Protocol):
    """Delivers one notification, or raises `DeliveryFailed` saying why it could not.

    `send` returns only once the receiver has accepted the notification (for HTTP, a 2xx),
    and must return or fail within a bounded time (the outbox's lease assumes a few seconds).
    """

    def send(self, message: Notification) -> None: ...
