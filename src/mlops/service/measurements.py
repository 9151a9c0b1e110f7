"""Measurements: what the gateways measured per revision and role, delayed labels, and the
increments the controller reads each tick."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from mlops.core.matching import matches
from mlops.core.measure import Measurements, combine
from mlops.errors import InvalidInput
from mlops.records import Deployment
from mlops.service.base import ServiceBase, deployment_of
from mlops.store.measurements import MeasurementRow

PG_SETTLE_S = 0.5
"""On PostgreSQL, how old a measurement row must be before the controller reads past it."""
LATE_S = 2.0
"""How long after its stamp a prediction or label may reach the store (gateway flushes)."""


class MeasurementOps(ServiceBase):
    def measurements(
        self, deployment: str | None, *, window_s: float = 60.0, until: datetime | None = None
    ) -> list[Measurements]:
        """What the gateways measured per revision and role over the last `window_s` seconds."""
        if not window_s > 0:
            raise InvalidInput("the window must be a positive number of seconds")
        end = until or self.clock()
        since = end - timedelta(seconds=window_s)
        with self.store.read() as tx:
            dep = deployment_of(tx, deployment)
            rows = tx.measurement_rows(dep.id, since)
            labels = tx.labelled_predictions(dep.id, since)
            mirrored = tx.mirrored_answers(dep.id, since)
        parts: dict[tuple[int, str], list[Measurements]] = {}
        measured = _measured(dep.name, [r for r in rows if r.ended_at <= end], labels, mirrored)
        for m in measured:
            parts.setdefault((m.revision, m.role), []).append(m)
        out = [combine(items) for _, items in sorted(parts.items())]
        return [m for m in out if m is not None]

    def add_label(self, deployment_id: int, request_id: str, label: Any) -> str:
        """Keep a delayed label for a request the deployment answered and logged: `accepted`,
        `duplicate` (the first label stays) or `unserved`."""
        with self.store.write() as tx:
            return tx.add_label(deployment_id, request_id, label, self.clock())

    def measurement_increments(
        self, deployment: Deployment, after_id: int, labels_since: datetime, until: datetime
    ) -> tuple[list[Measurements], int]:
        """Measurements (live and shadow) written after row `after_id`, and labels that arrived in
        (labels_since, until]; with the highest row id read, for the next call."""
        # Predictions and labels are flushed a moment after they are stamped: a window that
        # ends LATE_S ago holds all of its rows.
        since, end = labels_since - timedelta(seconds=LATE_S), until - timedelta(seconds=LATE_S)
        with self.store.read() as tx:
            rows = tx.measurement_rows_after(deployment.id, after_id)
            labels = tx.labelled_predictions(deployment.id, since, end)
            mirrored = tx.mirrored_answers(deployment.id, since, end)
        if self.store.dialect == "postgresql":
            # Ids come from a sequence, so one flush may commit after another with a higher
            # id; rows are taken in id order up to the first younger than PG_SETTLE_S, and
            # the rest wait for the next call.
            cutoff = until - timedelta(seconds=PG_SETTLE_S)
            young = next((i for i, r in enumerate(rows) if r.ended_at > cutoff), len(rows))
            rows = rows[:young]
        return _measured(deployment.name, rows, labels, mirrored), max(
            (r.id for r in rows), default=after_id
        )

    def change_seq(self) -> int:
        with self.store.read() as tx:
            return tx.change_seq()


def _measured(
    deployment: str,
    rows: list[MeasurementRow],
    labels: list[tuple[int, str, Any, Any]],
    mirrored: Sequence[tuple[int, Any, Any]] = (),
) -> list[Measurements]:
    """Measurement rows, labelled predictions and mirrored answers compared with the live
    ones, as Measurements (one each, to be combined)."""
    out = [
        Measurements(
            deployment,
            row.revision,
            row.role,
            row.requests,
            row.errors,
            {int(k): v for k, v in row.latency.items()},
            row.predictions,
        )
        for row in rows
    ]
    out += [
        Measurements(
            deployment, revision, role, labelled=1, correct=int(matches(prediction, label))
        )
        for revision, role, prediction, label in labels
    ]
    out += [
        Measurements(deployment, revision, "shadow", compared=1, agreed=int(matches(answer, live)))
        for revision, answer, live in mirrored
    ]
    return out
