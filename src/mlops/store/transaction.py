"""The base of every repository: one transaction's connection, and the statements that the two
databases spell differently (upserts, row locks)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite


class Transaction:
    """One open transaction on SQLite or PostgreSQL; `write` says whether it may change rows."""

    def __init__(self, conn: Connection, dialect: str, *, write: bool = False) -> None:
        self.conn = conn
        self.dialect = dialect
        self.write = write

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _lock(self, stmt: Any) -> Any:
        return stmt.with_for_update() if self.write and self.dialect == "postgresql" else stmt

    def insert_new(self, table: Any, keys: list[str]) -> Any:
        """INSERT … ON CONFLICT (keys) DO NOTHING, on either database."""
        return self._insert(table).on_conflict_do_nothing(index_elements=keys)

    def upsert(self, table: Any, keys: list[str], update_columns: list[str]) -> Any:
        """INSERT … ON CONFLICT (keys) DO UPDATE of `update_columns`, on either database."""
        stmt = self._insert(table)
        return stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update_columns}
        )
