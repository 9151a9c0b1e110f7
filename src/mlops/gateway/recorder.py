"""Per-version measurements: counted in memory per request, flushed to the store by a thread.

The request path only adds to dictionaries under a lock. About once a second a thread swaps
them out and writes one `measurements` row per (deployment, revision, role) and the
request log that delayed labels are joined to, in one transaction. Prometheus counters are
kept beside them for `/metrics`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from mlops.core.measure import OTHER, REFUSED, latency_bin, prediction_key
from mlops.store import Store
from mlops.store.measurements import LoggedAnswer, MeasurementRecord

log = logging.getLogger("mlops.gateway")

PRUNE_EVERY_S = 300.0
MAX_PENDING_ROWS = 100_000
"""Request-log rows kept in memory while the store cannot be written; older ones are dropped."""


@dataclass
class _Tally:
    started_at: datetime
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: dict[int, int] = field(default_factory=dict)
    predictions: dict[str, int] = field(default_factory=dict)


class PromMetrics:
    """The Prometheus side: counters and a latency histogram per deployment and revision.

    Series stay bounded: prediction values are already bins or classes (`prediction_key`),
    and past `max_values` distinct ones per release and role the rest count as "other"."""

    max_values = 64

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        labels = ["deployment", "revision", "version", "role"]
        self.requests = Counter("mlops_requests", "Requests served", labels)
        self.errors = Counter("mlops_errors", "Failed requests by kind", [*labels, "kind"])
        self.latency = Histogram(
            "mlops_request_duration_seconds",
            "Time to answer a request",
            labels,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.predictions = Counter(
            "mlops_predictions", "Predictions by class or value bin", [*labels, "value"]
        )
        self.feedback = Counter("mlops_feedback", "Delayed labels received", ["deployment"])
        self._children: dict[tuple[str, ...], Any] = {}
        self._values: dict[tuple[str, ...], set[str]] = {}

    def _child(self, metric: Any, labels: tuple[str, ...]) -> Any:
        # Looking a labelled child up costs a lock and a tuple per call: keep them.
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(
        self,
        labels: tuple[str, str, str, str],
        latency_ms: float | None,
        error: str | None,
        keys: list[str],
    ) -> None:
        self._child(self.requests, labels).inc()
        if latency_ms is not None:
            self._child(self.latency, labels).observe(latency_ms / 1000.0)
        if error is not None:
            self._child(self.errors, (*labels, error)).inc()
        if not keys:
            return
        seen = self._values.setdefault(labels, set())
        for key in keys:
            if key not in seen:
                if len(seen) >= self.max_values:
                    key = OTHER
                seen.add(key)
            self._child(self.predictions, (*labels, key)).inc()


class Recorder:
    def __init__(
        self,
        store: Store,
        worker: str,
        clock: Callable[[], datetime],
        *,
        flush_interval_s: float = 1.0,
        fast_flush_s: float = 0.2,
        fast: Callable[[], bool] = lambda: False,
        log_predictions: bool = True,
        retention_s: float = 7 * 24 * 3600.0,
        prom: PromMetrics | None = None,
    ) -> None:
        self.store = store
        self.worker = worker
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self.fast_flush_s = fast_flush_s
        self.fast = fast
        self.log_predictions = log_predictions
        self.prom = prom
        self.retention_s = retention_s
        self._last_prune = 0.0
        self._lock = threading.Lock()
        self._tallies: dict[tuple[int, int, str], _Tally] = {}
        self._requests: list[LoggedAnswer] = []
        self._pending: set[tuple[int, str]] = set()
        """(deployment id, request id) of the logged answers not yet written."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        *,
        deployment_id: int,
        deployment: str,
        revision: int,
        version: str,
        role: str,
        latency_ms: float,
        error: str | None,
        outputs: np.ndarray | None,
        output_kind: str,
        request_id: str,
    ) -> None:
        values = outputs.tolist() if outputs is not None else None
        keys = [prediction_key(v, output_kind) for v in values] if values is not None else []
        now = self.clock()
        with self._lock:
            tally = self._tallies.get((deployment_id, revision, role))
            if tally is None:
                tally = self._tallies[(deployment_id, revision, role)] = _Tally(now)
            tally.requests += 1
            # How long it took to refuse an input says nothing of the release.
            refused = error == REFUSED
            if not refused:
                b = latency_bin(latency_ms)
                tally.latency[b] = tally.latency.get(b, 0) + 1
            if error is not None:
                tally.errors[error] = tally.errors.get(error, 0) + 1
            for key in keys:
                tally.predictions[key] = tally.predictions.get(key, 0) + 1
            if self.log_predictions and outputs is not None:
                self._requests.append(
                    LoggedAnswer(deployment_id, request_id, revision, role, values, now)
                )
                self._pending.add((deployment_id, request_id))
        if self.prom is not None:
            self.prom.observe(
                (deployment, str(revision), version, role),
                None if refused else latency_ms,
                error,
                keys,
            )

    def pending(self, deployment_id: int, request_id: str) -> bool:
        """Whether an answer to this request is logged here and not yet written to the store."""
        with self._lock:
            return (deployment_id, request_id) in self._pending

    def labelled(self, deployment: str) -> None:
        if self.prom is not None:
            self.prom.feedback.labels(deployment).inc()

    def flush(self) -> None:
        with self._lock:
            tallies, self._tallies = self._tallies, {}
            requests, self._requests = self._requests, []
            self._pending = set()
        if not (tallies or requests):
            return
        now = self.clock()
        rows = [
            MeasurementRecord(
                deployment_id=dep,
                revision=rev,
                role=role,
                worker=self.worker,
                started_at=tally.started_at,
                ended_at=now,
                requests=tally.requests,
                errors=tally.errors,
                latency={str(k): v for k, v in tally.latency.items()},
                predictions=tally.predictions,
            )
            for (dep, rev, role), tally in tallies.items()
        ]
        try:
            with self.store.write() as tx:
                tx.add_measurements(rows)
                tx.log_answers(requests)
        except Exception:
            log.exception("could not write measurements; keeping them for the next flush")
            with self._lock:
                for key, tally in tallies.items():
                    self._merge_back(key, tally)
                kept = requests[-MAX_PENDING_ROWS:]
                self._requests[:0] = kept
                self._pending.update((r.deployment_id, r.request_id) for r in kept)

    def _merge_back(self, key: tuple[int, int, str], old: _Tally) -> None:
        current = self._tallies.get(key)
        if current is None:
            self._tallies[key] = old
            return
        current.started_at = old.started_at
        current.requests += old.requests
        for source, target in (
            (old.errors, current.errors),
            (old.predictions, current.predictions),
        ):
            for k, n in source.items():
                target[k] = target.get(k, 0) + n
        for b, n in old.latency.items():
            current.latency[b] = current.latency.get(b, 0) + n

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mlops-recorder", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # While a rollout is judged its measurements reach the controller sooner.
        while not self._stop.wait(self.fast_flush_s if self.fast() else self.flush_interval_s):
            self.flush()
            if time.monotonic() - self._last_prune > PRUNE_EVERY_S:
                self._last_prune = time.monotonic()
                self.prune()

    def prune(self) -> None:
        """Forget measurements, predictions and labels older than the retention period."""
        cutoff = self.clock() - timedelta(seconds=self.retention_s)
        try:
            with self.store.write() as tx:
                tx.prune_measurements(before=cutoff)
        except Exception:
            log.exception("could not prune old measurements")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
