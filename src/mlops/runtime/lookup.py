"""A lookup stage bound to a deployment's data resource: one query per batch, by key.

Each worker thread keeps its own read connection. SQLite readers see a restore at its COMMIT
(WAL readers are never blocked by it); PostgreSQL reads in autocommit, so each batch sees
the last committed data and a rebuilt table swapped in by a restore is found by its name.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from mlops.core.components import TABLE_DRIVERS
from mlops.core.lookup import InvalidKey, LookupSpec
from mlops.errors import BadKey, LookupFailed
from mlops.errors import UnknownKey as UnknownKey
from mlops.ratelog import RateLimitedLog
from mlops.records import DataResource

log = RateLimitedLog(logging.getLogger("mlops.runtime"))

CHUNK = 500
"""Keys per query: SQLite allows 999 parameters by default on older builds."""


class FeatureReader:
    """Calls `spec` on a batch of request rows, reading its columns from `resource`."""

    def __init__(self, spec: LookupSpec, resource: DataResource, outputs: Sequence[str]) -> None:
        if resource.driver not in TABLE_DRIVERS:
            raise LookupError(
                f"a lookup reads a table: the data resource {resource.name!r} is a "
                f"{resource.driver}, not an SQLite or PostgreSQL database"
            )
        self.spec = spec
        self.resource = resource
        self.outputs = tuple(outputs)
        self.where = f"the table {spec.table} of {resource.name}"
        self._local = threading.local()
        names = ", ".join(_quote(c) for c in (spec.key, *spec.columns))
        self._select = f"SELECT {names} FROM {_quote(spec.table)} WHERE {_quote(spec.key)}"

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        try:
            keys = self.spec.keys(rows)
        except InvalidKey as exc:
            raise BadKey(str(exc)) from None
        found: dict[Any, tuple[Any, ...]] = {}
        try:
            for start in range(0, len(keys), CHUNK):
                for key, *values in self._fetch(keys[start : start + CHUNK]):
                    found[key] = tuple(values)
        except Exception as exc:
            log.log(
                logging.WARNING,
                f"lookup:{self.resource.name}",
                "%s could not be read: %s: %s",
                self.where,
                type(exc).__name__,
                exc,
            )
            raise LookupFailed(f"the lookup could not read {self.where}") from None
        try:
            return self.spec.arrange(rows, found, self.outputs, self.where)
        except LookupError as exc:
            raise UnknownKey(str(exc)) from None

    def _fetch(self, keys: list[Any]) -> list[tuple[Any, ...]]:
        if self.resource.driver == "sqlite":
            marks = ",".join("?" * len(keys))
            return self._sqlite().execute(f"{self._select} IN ({marks})", keys).fetchall()
        from psycopg import DataError
        from psycopg.errors import UndefinedFunction

        conn = self._postgresql()
        found: list[tuple[Any, ...]] = []
        try:
            # One query per kind of key: PostgreSQL has no `text = bigint`, nor reads "abc" or
            # 2**40 as an integer column's value; a key the column cannot hold is not in it.
            for kind in (int, str):
                group = [key for key in keys if isinstance(key, kind)]
                if not group:
                    continue
                try:
                    found += conn.execute(f"{self._select} = ANY(%s)", (group,)).fetchall()
                except (UndefinedFunction, DataError):
                    continue
            return found
        except Exception:
            conn.close()
            self._local.conn = None
            raise

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"file:{quote(self.resource.location)}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
            self._local.conn = conn
        return conn

    def _postgresql(self) -> Any:
        import psycopg
        from psycopg import sql

        from mlops.snapshots.postgresql import split_location

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            url, schema = split_location(self.resource.location)
            conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            self._local.conn = conn
        return conn


def _quote(name: str) -> str:
    """A double-quoted identifier (the names were checked at registration: letters, digits
    and underscores)."""
    return '"' + name.replace('"', '""') + '"'
