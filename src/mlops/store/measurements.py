"""Measurements: the gateways' per-release tallies, the request log of their answers, the
delayed labels joined to it, and the pruning of all three."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Dialect, Text, bindparam, cast, delete, insert, select

from mlops.store import schema as t
from mlops.store.transaction import Transaction

SERVED_ROLES = ("live", "pinned")
"""Roles whose answers went to a client, and so may be labelled."""


@dataclass(frozen=True, slots=True)
class MeasurementRecord:
    """What one gateway worker counted for one (deployment, revision, role) over a period."""

    deployment_id: int
    revision: int
    role: str
    worker: str
    started_at: datetime
    ended_at: datetime
    requests: int
    errors: dict[str, int]
    latency: dict[str, int]
    """Requests per latency bin (the bin number as text)."""
    predictions: dict[str, int]


@dataclass(frozen=True, slots=True)
class MeasurementRow(MeasurementRecord):
    """A recorded measurement, with its id (the order in which they were written)."""

    id: int


@dataclass(frozen=True, slots=True)
class LoggedAnswer:
    """One answer a release gave, kept so that a delayed label can be joined to it."""

    deployment_id: int
    request_id: str
    revision: int
    role: str
    prediction: Any
    at: datetime


_ANSWER_COLUMNS = ("deployment_id", "request_id", "role", "revision", "prediction", "at")
_answer_inserts: dict[str, tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = {}


def _answer_insert(
    dialect: Dialect, insert_new: Callable[[Any, list[str]], Any]
) -> tuple[str, Callable[[Any], Any], Callable[[Any], Any]]:
    """The request log's INSERT … ON CONFLICT DO NOTHING as the driver's SQL, with the
    converters of its timestamp and JSON columns, made once per dialect."""
    cached = _answer_inserts.get(dialect.name)
    if cached is None:
        stmt = insert_new(t.predictions, ["deployment_id", "request_id", "role"]).values(
            {c: bindparam(c) for c in _ANSWER_COLUMNS}
        )
        compiled = stmt.compile(dialect=dialect)
        if dialect.positional and tuple(compiled.positiontup or ()) != _ANSWER_COLUMNS:
            raise RuntimeError(f"unexpected parameter order {compiled.positiontup}")

        def processor(column: str) -> Callable[[Any], Any]:
            process = t.predictions.c[column].type.dialect_impl(dialect).bind_processor(dialect)
            return process if process is not None else _same

        cached = (str(compiled), processor("at"), processor("prediction"))
        _answer_inserts[dialect.name] = cached
    return cached


def _same(value: Any) -> Any:
    return value


class MeasurementRepo(Transaction):
    def add_measurements(self, records: Sequence[MeasurementRecord]) -> None:
        if not records:
            return
        rows = [
            {
                "deployment_id": r.deployment_id,
                "revision": r.revision,
                "role": r.role,
                "worker": r.worker,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "requests": r.requests,
                "errors": r.errors,
                "latency": r.latency,
                "predictions": r.predictions,
            }
            for r in records
        ]
        self.conn.execute(insert(t.measurements), rows)

    def log_answers(self, answers: Sequence[LoggedAnswer]) -> None:
        """Keep answers for labels; a client may reuse its request id, and the first answer
        logged for a (deployment, request, role) wins.

        A gateway writes thousands of these a second, from a thread that shares the GIL with
        its event loop: they go to the driver's executemany with values converted by the
        columns' own bind processors, without SQLAlchemy's per-row statement machinery
        (half the time, docs/benchmarks.md "Tail latency")."""
        if not answers:
            return
        dialect = self.conn.dialect
        sql, to_at, to_json = _answer_insert(dialect, self.insert_new)
        named = not dialect.positional
        times: dict[datetime, Any] = {}
        params = []
        for a in answers:
            at = times.get(a.at)
            if at is None:
                at = times[a.at] = to_at(a.at)
            row = (a.deployment_id, a.request_id, a.role, a.revision, to_json(a.prediction), at)
            params.append(dict(zip(_ANSWER_COLUMNS, row, strict=True)) if named else row)
        self.conn.exec_driver_sql(sql, params)

    def prune_measurements(self, *, before: datetime) -> None:
        """Forget measurements, logged answers and labels older than `before`."""
        self.conn.execute(delete(t.measurements).where(t.measurements.c.ended_at < before))
        self.conn.execute(delete(t.predictions).where(t.predictions.c.at < before))
        self.conn.execute(delete(t.feedback).where(t.feedback.c.at < before))

    def measurement_rows(self, deployment_id: int, since: datetime) -> list[MeasurementRow]:
        m = t.measurements
        stmt = select(m).where(m.c.deployment_id == deployment_id, m.c.ended_at > since)
        return [MeasurementRow(**row._mapping) for row in self.conn.execute(stmt)]

    def served_since(self, since: datetime) -> list[tuple[int, datetime, int, bytes, bytes]]:
        """Every deployment's measurements of answers that went to clients, since `since`:
        (deployment id, end, requests, errors, latency), the last two as JSON text, left to the
        caller to parse (a page of every deployment reads thousands of them)."""
        m = t.measurements
        stmt = select(
            m.c.deployment_id,
            m.c.ended_at,
            m.c.requests,
            cast(m.c.errors, Text),
            cast(m.c.latency, Text),
        ).where(m.c.ended_at > since, m.c.role.in_(SERVED_ROLES))
        return [(r[0], r[1], r[2], r[3].encode(), r[4].encode()) for r in self.conn.execute(stmt)]

    def measurement_rows_after(self, deployment_id: int, after_id: int) -> list[MeasurementRow]:
        m = t.measurements
        stmt = (
            select(m).where(m.c.deployment_id == deployment_id, m.c.id > after_id).order_by(m.c.id)
        )
        return [MeasurementRow(**row._mapping) for row in self.conn.execute(stmt)]

    def labelled_predictions(
        self, deployment_id: int, since: datetime, until: datetime | None = None
    ) -> list[tuple[int, str, Any, Any]]:
        """(revision, role, prediction, label) of requests labelled in (since, until]."""
        p, f = t.predictions, t.feedback
        stmt = (
            select(p.c.revision, p.c.role, p.c.prediction, f.c.label)
            .join(
                f,
                (f.c.deployment_id == p.c.deployment_id) & (f.c.request_id == p.c.request_id),
            )
            .where(f.c.deployment_id == deployment_id, f.c.at > since)
        )
        if until is not None:
            stmt = stmt.where(f.c.at <= until)
        return [tuple(row) for row in self.conn.execute(stmt)]

    def add_label(self, deployment_id: int, request_id: str, label: Any, at: datetime) -> str:
        """Keep a delayed label for a request the deployment answered: `accepted`, `duplicate`
        (a label came first; it stays) or `unserved` (no answer of it is logged)."""
        p, f = t.predictions, t.feedback
        served = select(p.c.request_id).where(
            p.c.deployment_id == deployment_id,
            p.c.request_id == request_id,
            p.c.role.in_(SERVED_ROLES),
        )
        if self.conn.execute(served.limit(1)).first() is None:
            return "unserved"
        added = self.conn.execute(
            self.insert_new(f, ["deployment_id", "request_id"])
            .values(deployment_id=deployment_id, request_id=request_id, label=label, at=at)
            .returning(f.c.request_id)
        ).first()
        return "duplicate" if added is None else "accepted"

    def mirrored_answers(
        self, deployment_id: int, since: datetime, until: datetime | None = None
    ) -> list[tuple[int, Any, Any]]:
        """(shadow revision, its prediction, the live prediction) of the mirrored requests
        answered in (since, until]."""
        shadow, live = t.predictions.alias("shadow"), t.predictions.alias("live")
        stmt = (
            select(shadow.c.revision, shadow.c.prediction, live.c.prediction)
            .join(
                live,
                (live.c.deployment_id == shadow.c.deployment_id)
                & (live.c.request_id == shadow.c.request_id)
                & (live.c.role == "live"),
            )
            .where(
                shadow.c.role == "shadow",
                shadow.c.deployment_id == deployment_id,
                shadow.c.at > since,
            )
        )
        if until is not None:
            stmt = stmt.where(shadow.c.at <= until)
        return [tuple(row) for row in self.conn.execute(stmt)]
