"""A log line per kind of trouble per interval: a client that triggers the same failure on
every request must not fill the disk with the gateway's log."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """Logs at most one record per `key` every `interval_s` seconds; the next one that gets
    through says how many were left out in between."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return
            if len(self._last) > 1024:
                self._last.clear()
            self._last[key] = now
            skipped = self._skipped.pop(key, 0)
        if skipped:
            message += f" ({skipped} more like it in the last {self.interval_s:g} s not logged)"
        self.logger.log(level, message, *args)
