"""Engines for the two supported databases, and the mapping of their failures onto our errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from mlops.errors import ConcurrentUpdate, InvalidInput, StoreUnavailable
from mlops.settings import redact

SQLITE_BUSY_TIMEOUT_S = 30.0
WRITE_OPTION = "mlops_write"


PG_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    # A partition (packets dropped, no reset) fails a query within seconds instead of the
    # kernel's ~15 minutes of retransmissions, and an idle connection is found dead by probes.
    "tcp_user_timeout": 10_000,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
"""libpq settings of every PostgreSQL connection mlops opens."""


def make_engine(url: str, *, idle_in_transaction_s: float | None = None) -> Engine:
    """An engine on `url`. With `idle_in_transaction_s` (PostgreSQL), the server ends any
    transaction of this engine's connections left idle that long, and its locks with it: a
    process cut off from the store in the middle of a transaction does not hold up others."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise InvalidInput(f"invalid store URL {url!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if backend == "postgresql":
        try:
            engine = create_engine(
                url,
                pool_pre_ping=True,
                pool_size=4,
                max_overflow=4,
                connect_args=PG_CONNECT_ARGS,
            )
        except (ImportError, sa_exc.NoSuchModuleError) as exc:
            raise InvalidInput(
                f"store URL {redact(url)}: {exc}; use postgresql+psycopg://"
            ) from None
        if idle_in_transaction_s is not None:
            limit_ms = max(1, int(idle_in_transaction_s * 1000))

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection: Any, _record: Any) -> None:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute(f"SET idle_in_transaction_session_timeout = {limit_ms}")
                dbapi_connection.commit()

        return engine
    raise InvalidInput(
        f"unsupported store URL {redact(url)}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if not database or database == ":memory:":
        raise InvalidInput("an in-memory SQLite store cannot be shared: give sqlite:///PATH")
    path = Path(database).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(
            f"cannot create the store's folder {path.parent}: {exc.strerror}"
        ) from None
    # Pooled connections stay open: closing the last connection to a WAL database makes
    # SQLite checkpoint it, about a quarter of a rollback's time.
    engine = create_engine(
        url, pool_size=4, max_overflow=8, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's `begin` event emit BEGIN itself (the pysqlite driver would defer it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the database's write lock up front, so a read-then-write transaction
        # never fails half way on a lock upgrade. Waiting writers retry the lock until the busy
        # timeout (SQLite keeps no queue, so waits are uneven); readers go on meanwhile.
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn driver failures into the error tree: unreachable store, lock and write conflicts."""
    try:
        yield
    except sa_exc.OperationalError as exc:
        text = str(exc.orig)
        if "database is locked" in text or "deadlock" in text or "could not serialize" in text:
            raise ConcurrentUpdate(
                f"the store is busy with another writer: {text}; try again"
            ) from None
        if exc.connection_invalidated or "connect" in text.lower() or "unable to open" in text:
            raise StoreUnavailable(
                f"cannot reach the store at {redact(url)}: {_first_line(text)}"
            ) from None
        raise StoreUnavailable(f"the store at {redact(url)} failed: {_first_line(text)}") from None
    except sa_exc.IntegrityError as exc:
        raise ConcurrentUpdate(
            f"another writer changed the same record at the same time: {_first_line(str(exc.orig))}"
        ) from None
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(
                f"lost the store at {redact(url)}: {_first_line(str(exc.orig))}"
            ) from None
        raise


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
