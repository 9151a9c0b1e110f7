"""`RecordingNotifier`: a fake for tests that keeps what it was sent, and can be told to fail."""

from __future__ import annotations

import threading

from mlops.notify.alert import Notification
from mlops.notify.notifier import DeliveryFailed


class RecordingNotifier:
    """Appends each notification to `sent`; while `failing` is set, raises it as the reason."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.failing: str | None = None
        self._lock = threading.Lock()

    def send(self, message: Notification) -> None:
        with self._lock:
            if self.failing is not None:
                raise DeliveryFailed(self.failing)
            self.sent.append(message)
