"""`LogNotifier`: one line per notification on the `mlops.alerts` logger."""

from __future__ import annotations

import logging

from mlops.notify.alert import Notification, summarize

LOGGER = "mlops.alerts"


class LogNotifier:
    """Writes the summary line: at WARNING for rollbacks, aborts and pauses, at INFO otherwise."""

    LOUD = frozenset({"rolled_back", "aborted", "paused"})

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(LOGGER)

    def send(self, message: Notification) -> None:
        level = logging.WARNING if message.alert.kind in self.LOUD else logging.INFO
        self._log.log(
            level,
            "%s [event %d, delivery %d]",
            summarize(message.alert),
            message.event_id,
            message.id,
            extra={"alert": message.to_dict()},
        )
