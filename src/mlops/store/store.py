"""The Store: transactions over the schema, with keyed reads and append-only writes.

A `Tx` is one transaction; it holds the repository of every concern (one module each):

    models        models and versions          deployments   endpoints, routes
    releases      revisions, pins, stable/candidate
    events        the append-only history     rollouts      rollouts and their commands
    leases        the controller's leader lease
    measurements  tallies, logged answers, labels
    snapshots     data resources and snapshot rows
    outbox        alerts waiting for delivery  changes       the change feed
    tokens        API tokens (hashes only)

Every read on the rollback path is by a primary key or a unique index, so its cost does
not grow with the number of versions or releases (see docs/rollback.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlops.store.artifacts import ArtifactRepo
from mlops.store.changes import CHANGE_CHANNEL, ChangeFeed
from mlops.store.deployments import DeploymentRepo, deployment_stmt
from mlops.store.engine import WRITE_OPTION, make_engine, translate_errors
from mlops.store.events import ACTOR_SOURCE_KEY, EventRepo
from mlops.store.leases import LeaseRepo, current_fence
from mlops.store.measurements import SERVED_ROLES, MeasurementRepo
from mlops.store.migrate import ensure_schema
from mlops.store.models import ModelRepo, version_stmt
from mlops.store.outbox import OutboxRepo
from mlops.store.releases import ReleaseRepo, pin_stmt, release_components_stmt, release_stmt
from mlops.store.rollouts import RolloutRepo
from mlops.store.sessions import SessionRepo
from mlops.store.snapshots import SnapshotRepo
from mlops.store.tokens import TokenRepo

__all__ = [
    "ACTOR_SOURCE_KEY",
    "CHANGE_CHANNEL",
    "SERVED_ROLES",
    "Store",
    "Tx",
    "deployment_stmt",
    "pin_stmt",
    "release_components_stmt",
    "release_stmt",
    "version_stmt",
]


class Tx(
    ArtifactRepo,
    ModelRepo,
    DeploymentRepo,
    ReleaseRepo,
    EventRepo,
    RolloutRepo,
    LeaseRepo,
    MeasurementRepo,
    SnapshotRepo,
    OutboxRepo,
    TokenRepo,
    SessionRepo,
):
    """One transaction. Methods read or write by key; none scans history."""


class Store:
    """A handle on the database: `read()` and `write()` give a `Tx` inside one transaction."""

    def __init__(
        self, url: str, *, migrate: bool = True, idle_in_transaction_s: float | None = None
    ) -> None:
        self.url = url
        self.engine = make_engine(url, idle_in_transaction_s=idle_in_transaction_s)
        self.dialect = self.engine.dialect.name
        self.changes = ChangeFeed(self.engine)
        if migrate:
            with translate_errors(url):
                ensure_schema(self.engine)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with translate_errors(self.url), self.engine.connect() as conn, conn.begin():
            yield Tx(conn, self.dialect)

    @contextmanager
    def write(self, *, dry_run: bool = False) -> Iterator[Tx]:
        """A write transaction, committed when the block ends; with `dry_run`, rolled back
        instead: the block sees its own writes, nobody else ever does. Under a lease's fence
        (`mlops.store.leases.fenced`) it first checks that the lease is still held, or raises
        LeaseLost before anything is written."""
        with translate_errors(self.url), self.engine.connect() as raw:
            conn = raw.execution_options(**{WRITE_OPTION: True})
            with conn.begin() as transaction:
                tx = Tx(conn, self.dialect, write=True)
                fence = current_fence()
                if fence is not None:
                    tx.check_fence(fence)
                yield tx
                if dry_run:
                    transaction.rollback()

    def explain(self, statement: Any) -> list[str]:
        """The database's query plan for a statement, one line per row."""
        compiled = statement.compile(self.engine, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if self.dialect == "sqlite" else "EXPLAIN "
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + str(compiled)).fetchall()
        return [" | ".join(str(v) for v in row) for row in rows]

    def dispose(self) -> None:
        self.engine.dispose()
