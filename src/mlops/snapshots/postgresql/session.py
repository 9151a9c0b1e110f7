"""A session on one schema: the resource URL, the connection with fixed output settings, and
table locks taken in short attempts."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from mlops.errors import MlopsError, RestoreFailed, UnsupportedResource

SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "client_encoding": "UTF8",
}
Cursor = psycopg.Cursor[tuple[Any, ...]]
Connection = psycopg.Connection[tuple[Any, ...]]


def split_location(location: str, schema: str | None = None) -> tuple[str, str]:
    """A libpq URL and the schema: `schema` if given, else the URL's `?schema=`, else public."""
    parts = urlsplit(location)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise UnsupportedResource(f"not a PostgreSQL URL: {location!r}")
    query = parse_qsl(parts.query)
    named = [v for k, v in query if k == "schema"]
    kept = [(k, v) for k, v in query if k != "schema"]
    url = urlunsplit((scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment))
    return url, schema or (named[0] if named else "public")


def relation(schema: str, name: str) -> sql.Identifier:
    """The schema-qualified name of a table or sequence."""
    return sql.Identifier(schema, name)


def regclass_text(cur: Cursor, schema: str, name: str) -> str:
    """The qualified name as text, for a `%s::regclass` parameter."""
    return relation(schema, name).as_string(cur)


def lock_timeout(seconds: float) -> sql.Composed:
    return sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(seconds * 1000)}ms"))


@contextmanager
def connect(
    location: str, schema: str | None, timeout_s: int, error: type[MlopsError]
) -> Iterator[tuple[Connection, str]]:
    """A connection to the resource with the session settings, and the schema; `error` is
    raised when it cannot be opened, `UnsupportedResource` when the schema does not exist."""
    url, schema = split_location(location, schema)
    options: dict[str, Any] = {"connect_timeout": timeout_s}
    if "application_name=" not in url:
        options["application_name"] = "mlops-snapshots"
    try:
        conn: Connection = psycopg.connect(url, **options)
    except psycopg.Error as exc:
        raise error(f"cannot connect to PostgreSQL for schema {schema!r}: {exc}") from None
    try:
        with conn.cursor() as cur:
            for name, value in SESSION_SETTINGS.items():
                cur.execute("SELECT set_config(%s, %s, false)", (name, value))
            cur.execute("SELECT set_config('search_path', quote_ident(%s), false)", (schema,))
            cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
            if (cur.fetchone() or (0,))[0] == 0:
                raise UnsupportedResource(f"schema {schema!r} does not exist")
        conn.commit()
        yield conn, schema
    finally:
        conn.close()


@dataclass(frozen=True)
class Locks:
    """Takes table locks in short attempts (`attempt_s`), so that readers queued behind a
    waiting ACCESS EXCLUSIVE request wait at most one attempt; gives up after `timeout_s`."""

    timeout_s: float = 30.0
    attempt_s: float = 0.2

    def take(self, cur: Cursor, schema: str, tables: Sequence[str], mode: str) -> None:
        if not tables:
            return
        listed = sql.SQL(", ").join(relation(schema, t) for t in sorted(tables))
        statement = sql.SQL("LOCK TABLE {} IN {} MODE").format(listed, sql.SQL(mode))
        deadline = time.monotonic() + self.timeout_s
        pause = 0.05
        while True:
            cur.execute("SAVEPOINT mlops_lock")
            try:
                cur.execute(lock_timeout(self.attempt_s))
                cur.execute(statement)
                cur.execute("SET LOCAL lock_timeout = 0")
                cur.execute("RELEASE SAVEPOINT mlops_lock")
                return
            except pg_errors.LockNotAvailable:
                cur.execute("ROLLBACK TO SAVEPOINT mlops_lock")
                if time.monotonic() > deadline:
                    raise RestoreFailed(
                        f"could not lock {listed.as_string(cur)} in {mode} mode within "
                        f"{self.timeout_s:g} s: another session holds a conflicting lock "
                        "(a long transaction or DDL); nothing was changed"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
