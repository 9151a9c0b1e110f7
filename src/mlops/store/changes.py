"""The change feed: a counter bumped by every write that changes what gateways route, and the
ways a reader learns of a bump (polling the counter on SQLite, `LISTEN/NOTIFY` on PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import Engine, select, text, update

from mlops.errors import StoreUnavailable
from mlops.store import schema as t
from mlops.store.engine import PG_CONNECT_ARGS
from mlops.store.transaction import Transaction

CHANGE_CHANNEL = "mlops_changes"


def _seq_stmt() -> Any:
    return select(t.store_meta.c.value).where(t.store_meta.c.key == "change_seq")


class ChangeRepo(Transaction):
    def bump_change_seq(self) -> int:
        seq = int(
            self.conn.execute(
                update(t.store_meta)
                .where(t.store_meta.c.key == "change_seq")
                .values(value=t.store_meta.c.value + 1)
                .returning(t.store_meta.c.value)
            ).scalar_one()
        )
        if self.dialect == "postgresql":
            self.conn.execute(
                text("SELECT pg_notify(:channel, :seq)"),
                {"channel": CHANGE_CHANNEL, "seq": str(seq)},
            )
        return seq

    def change_seq(self) -> int:
        return int(self.conn.execute(_seq_stmt()).scalar_one())


class ChangeFeed:
    """How a long-running reader learns that the store changed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def pushed(self) -> bool:
        """Whether changes are pushed (PostgreSQL) rather than polled (SQLite)."""
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def polling(self) -> Iterator[Callable[[], int]]:
        """A reader of the change counter on one connection held open while in use."""
        stmt = _seq_stmt()
        with self.engine.connect() as conn:

            def read() -> int:
                seq = int(conn.execute(stmt).scalar_one())
                conn.rollback()
                return seq

            yield read

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[Listener]:
        """A listener for change notifications, on a connection of its own that listens from
        the moment this is entered (PostgreSQL only). Asynchronous: nothing it does holds the
        event loop, however long the store takes to answer."""
        import psycopg

        url = self.engine.url
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            conn = await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, **PG_CONNECT_ARGS
            )
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot listen for changes: {_first_line(exc)}") from None
        async with conn:
            try:
                await conn.execute(f"LISTEN {CHANGE_CHANNEL}")
                yield Listener(conn)
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"listening for changes: {_first_line(exc)}") from None


class Listener:
    """The connection a gateway listens on: waits for a notification, reads the counter."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._seq = str(_seq_stmt().compile(compile_kwargs={"literal_binds": True}))

    async def wait(self, timeout_s: float) -> int | None:
        """The change number of the next notification, or None after `timeout_s`."""
        async for notice in self.conn.notifies(timeout=timeout_s, stop_after=1):
            try:
                return int(notice.payload)
            except ValueError:
                return -1  # not ours to read: the counter is read instead
        return None

    async def change_seq(self) -> int:
        cursor = await self.conn.execute(self._seq)
        row = await cursor.fetchone()
        return int(row[0])


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
