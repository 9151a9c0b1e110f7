"""Fakes for the controller's plug points, passed in where a user passes the real thing.

`FixedReadings` is a `MetricProvider` that answers from a table instead of Prometheus;
`RecordingChannels` is a notifier factory whose notifiers keep what they are sent. The other
fakes live beside what they stand in for: `MemorySnapshot` (snapshot drivers), `RecordingNotifier`
(one channel) and `tests/fake_flavor.py` (model flavors).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlops.core.metric_checks import NoData, Reading, due_metrics
from mlops.notify import Notification, Notifier, RecordingNotifier, channel_of
from mlops.notify.subscriptions import Entry
from mlops.rollout_spec import MetricSpec


class FixedReadings:
    """Reads each due metric from `values` by name (`NoData` for a name it does not hold), and
    keeps what it was asked: the metric names and the template values, in order."""

    def __init__(self, values: Mapping[str, Reading]) -> None:
        self.values = dict(values)
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.closed = False

    def read_due(
        self,
        metrics: Sequence[MetricSpec],
        state: Mapping[str, Any],
        values: Mapping[str, str],
        now: float,
    ) -> dict[str, Reading]:
        due = set(due_metrics([m.check() for m in metrics], state, now))
        out: dict[str, Reading] = {}
        for m in metrics:
            if m.name in due:
                self.asked.append((m.name, dict(values)))
                out[m.name] = self.values.get(m.name, NoData(f"no fixed reading for {m.name}"))
        return out

    def close(self) -> None:
        self.closed = True


class RecordingChannels:
    """A notifier factory: a `RecordingNotifier` per channel, the same one each time it is
    asked again, so a test reads what each channel was sent across rebuilds."""

    def __init__(self) -> None:
        self.by_channel: dict[str, RecordingNotifier] = {}

    def __call__(self, entries: Iterable[Entry]) -> dict[str, Notifier]:
        out: dict[str, Notifier] = {}
        for entry in entries:
            channel = channel_of(entry)
            if channel is not None:
                out[channel] = self.by_channel.setdefault(channel, RecordingNotifier())
        return out

    def sent(self, channel: str) -> list[Notification]:
        found = self.by_channel.get(channel)
        return [] if found is None else list(found.sent)
