"""Prometheus as a metric provider: one instant PromQL query per metric that is due, over HTTP
(`GET {address}/api/v1/query`). A failure comes back as a reading, never as an exception."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from mlops.core.metric_checks import (
    NoData,
    QueryError,
    Reading,
    due_metrics,
    prometheus_duration,
    render_query,
)
from mlops.rollout_spec import MetricSpec


class PrometheusProvider:
    def __init__(
        self, *, timeout_s: float = 2.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def query(self, address: str, promql: str) -> Reading:
        """The value of an instant query that returns a scalar or one series."""
        try:
            response = self._http.get(f"{address}/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            return QueryError(f"{address}: {type(exc).__name__}: {exc}")
        return reading_of(response.status_code, response.content)

    def read_due(
        self,
        metrics: Sequence[MetricSpec],
        state: Mapping[str, Any],
        values: Mapping[str, str],
        now: float,
    ) -> dict[str, Reading]:
        """Readings of the metrics whose interval has passed since their last reading; `values`
        fill the query templates (all placeholders but `{interval}`)."""
        due = set(due_metrics([m.check() for m in metrics], state, now))
        return {
            m.name: self.query(
                m.prometheus.address,
                render_query(
                    m.prometheus.query, {**values, "interval": prometheus_duration(m.interval)}
                ),
            )
            for m in metrics
            if m.name in due
        }

    def close(self) -> None:
        self._http.close()


def reading_of(status: int, body: bytes) -> Reading:
    """A reading from the HTTP API's answer: a number, no data, or the error it reports."""
    try:
        data = json.loads(body)
    except ValueError:
        return QueryError(f"HTTP {status}: the answer is not Prometheus's JSON")
    if not isinstance(data, dict):
        return QueryError(f"HTTP {status}: the answer is not Prometheus's JSON")
    if data.get("status") != "success":
        kind, error = data.get("errorType", "error"), data.get("error", "no details")
        return QueryError(f"HTTP {status}: {kind}: {error}")
    try:
        kind = data["data"]["resultType"]
        result = data["data"]["result"]
        if kind == "scalar":
            return float(result[1])
        if kind == "vector":
            if not result:
                return NoData()
            if len(result) > 1:
                return QueryError(
                    f"the query returned {len(result)} series, not one: aggregate them "
                    "(with sum(), max(), …)"
                )
            return float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return QueryError(f"unexpected answer: {type(exc).__name__}: {exc}")
    return QueryError(f"the query returned a {kind}, not a scalar or one series")
