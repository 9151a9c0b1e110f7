"""A feature table as a deployment's data resource: an SQLite file or a PostgreSQL schema.

Both kinds hold the same table, `features (customer PRIMARY KEY, amount)`, answer the same SQL
(the migrations the tests run are written once) and read back rows as the same tuples, so a
test about data resources runs unchanged on each. A PostgreSQL resource is a schema with a
random name in the test run's database (`pg_database` of tests/conftest.py: under CI an
unreachable server fails the test, elsewhere it skips), dropped at the end of the test.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mlops.snapshots import driver_for
from mlops.snapshots.postgresql import split_location
from tests.server import Cli, server_env

KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=[pytest.mark.postgres]),
]

MIGRATE = """
UPDATE features SET amount = amount * 2;
ALTER TABLE features ADD COLUMN risk REAL DEFAULT 0.5;
"""
BROKEN = """
UPDATE features SET amount = amount * 2;
ALTER TABLE no_such_table ADD COLUMN risk REAL;
"""

MIGRATION_MODULE = '''\
"""Python migrations for the tests: they get {resource name: location}."""

import os
import sqlite3
import time
from pathlib import Path

import psycopg
from psycopg import sql

from mlops.snapshots.postgresql import split_location


def execute(location, statement):
    """Run one statement on the resource, committed."""
    if location.startswith("postgres"):
        url, schema = split_location(location)
        with psycopg.connect(url) as pg:
            pg.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            pg.execute(statement.encode())
    else:
        with sqlite3.connect(location) as conn:
            conn.executescript(statement)


def half_way(resources):
    execute(resources["features"], "DELETE FROM features WHERE customer < 100")
    raise RuntimeError("lost the network half way")


def then_hang(resources):
    """Migrate (committed), say so in the file $MIGRATED_FLAG, then hang until killed."""
    execute(resources["features"], "UPDATE features SET amount = amount * 2;")
    execute(resources["features"], "ALTER TABLE features ADD COLUMN risk REAL DEFAULT 0.5;")
    Path(os.environ["MIGRATED_FLAG"]).write_text(str(os.getpid()))
    time.sleep(600)
'''


class Features:
    """The feature table of one kind of resource."""

    kind: str
    location: str
    no_such_table: str
    """How the engine says that a table is missing."""

    def add_args(self) -> list[str]:
        """The options of `mlops data add` that declare this resource."""
        return [f"--{self.kind}", self.location]

    def build(self, rows: int = 200) -> None:
        self.execute(
            "CREATE TABLE features (customer INTEGER PRIMARY KEY, amount DOUBLE PRECISION)"
        )
        self.execute(
            "INSERT INTO features VALUES "
            + ", ".join(f"({i}, {float(i * 1.5)!r})" for i in range(rows))
        )
        assert len(self.rows()) == rows

    def execute(self, statement: str) -> None:
        raise NotImplementedError

    def rows(self) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def checksum(self) -> str:
        return driver_for(self.kind).checksum(self.location)


class SqliteFeatures(Features):
    kind = "sqlite"
    no_such_table = "no such table"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def build(self, rows: int = 200) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        super().build(rows)

    def execute(self, statement: str) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.executescript(statement)

    def rows(self) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path) as conn:
            return conn.execute("SELECT * FROM features ORDER BY customer").fetchall()


class PostgresFeatures(Features):
    kind = "postgresql"
    no_such_table = 'relation "no_such_table" does not exist'

    def __init__(self, database_url: str) -> None:
        self.url, _ = split_location(database_url)
        self.schema = f"features_{uuid.uuid4().hex[:12]}"
        self.location = f"{self.url}?schema={self.schema}"

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            yield conn

    def create(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))

    def drop(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )

    def execute(self, statement: str) -> None:
        with self.connect() as db, db.transaction():
            db.execute(statement.encode())

    def rows(self) -> list[tuple[Any, ...]]:
        with self.connect() as db:
            return db.execute("SELECT * FROM features ORDER BY customer").fetchall()


@contextmanager
def feature_table(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Features]:
    """A built feature table of `kind`; a PostgreSQL one is its own schema, dropped after."""
    if kind == "sqlite":
        features: Features = SqliteFeatures(tmp_path / "features.db")
        features.build()
        yield features
        return
    database: str = request.getfixturevalue("pg_database")
    pg = PostgresFeatures(database)
    pg.create()
    try:
        pg.build()
        yield pg
    finally:
        pg.drop()


def migration_cli(home: Path, tmp_path: Path) -> Cli:
    """The CLI on an SQLite store, with MIGRATION_MODULE importable as `migrations`."""
    store = f"sqlite:///{tmp_path / 'store' / 'mlops.db'}"
    env = {**server_env(store, home), "COLUMNS": "200"}
    (tmp_path / "migrations.py").write_text(MIGRATION_MODULE)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    return Cli(env)
