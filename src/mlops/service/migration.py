"""A release's data migration: an SQL file run on each SQL resource in one transaction, or a
Python callable `module:function` that gets `{resource name: location}`."""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.errors import InvalidInput, MigrationFailed, MlopsError, UnreadableFile
from mlops.records import DataResource


@dataclass(frozen=True)
class Migration:
    """An SQL file run on each SQL resource in one transaction, or a Python callable."""

    source: str

    @property
    def is_sql(self) -> bool:
        return self.source.endswith(".sql")

    @classmethod
    def parse(cls, source: str) -> Migration:
        migration = cls(source)
        if migration.is_sql:
            path = Path(source)
            if not path.is_file():
                raise UnreadableFile(f"cannot read the migration {source}: no such file")
        else:
            migration.function()
        return migration

    def function(self) -> Callable[[dict[str, str]], Any]:
        module_name, _, name = self.source.partition(":")
        if not module_name or not name:
            raise InvalidInput(
                f"a migration is an .sql file or a Python callable `module:function`, "
                f"not {self.source!r}"
            )
        try:
            found = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as exc:
            raise InvalidInput(f"cannot import the migration {self.source}: {exc}") from None
        if not callable(found):
            raise InvalidInput(f"the migration {self.source} is not callable")
        return found  # type: ignore[no-any-return]

    def run(self, resources: Sequence[DataResource]) -> None:
        try:
            if self.is_sql:
                sql = Path(self.source).read_text()
                for resource in resources:
                    _run_sql(resource, sql)
            else:
                self.function()({r.name: r.location for r in resources})
        except MlopsError:
            raise
        except Exception as exc:
            raise MigrationFailed(
                f"the migration {self.source} failed: {type(exc).__name__}: {exc}"
            ) from None


def _run_sql(resource: DataResource, sql: str) -> None:
    if resource.driver == "sqlite":
        conn = sqlite3.connect(resource.location, isolation_level=None, timeout=30)
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;COMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
    elif resource.driver == "postgresql":
        import psycopg
        from psycopg import sql as pgsql

        from mlops.snapshots.postgresql.session import split_location

        url, schema = split_location(resource.location)
        with psycopg.connect(url) as pg:  # one transaction: committed, or rolled back
            pg.execute(pgsql.SQL("SET LOCAL search_path TO {}").format(pgsql.Identifier(schema)))
            pg.execute(sql.encode())
    else:
        raise InvalidInput(
            f"an SQL migration cannot change the {resource.driver} resource {resource.name!r}: "
            "use a Python callable"
        )
