"""The metric provider plug point: where the readings of a rollout spec's `metrics:` come from.

The gateway's own measurements (requests, errors, latency, labels) reach the judge through the
store; a provider answers for the metrics that live elsewhere. `PrometheusProvider` is the
built-in one; `tests/fakes.py` has `FixedReadings`, which answers from a table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from mlops.core.metric_checks import Reading
from mlops.rollout_spec import MetricSpec


class MetricProvider(Protocol):
    def read_due(
        self,
        metrics: Sequence[MetricSpec],
        state: Mapping[str, Any],
        values: Mapping[str, str],
        now: float,
    ) -> dict[str, Reading]:
        """Readings of the metrics whose interval has passed since their last reading (`state`
        is the analysis's memory of past readings); `values` fill the query templates. A
        failure is a reading (`QueryError`, `NoData`), never an exception."""
        ...

    def close(self) -> None: ...


MetricProviderFactory = Callable[[], MetricProvider]
"""Builds the provider when a rollout first asks for a metric; the controller closes it."""
