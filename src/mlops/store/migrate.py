"""Apply Alembic migrations on first use, once, even when several processes start together.
A store whose schema is current costs one read of its version row: Alembic itself is
imported only to upgrade."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, exc, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0009"
"""The newest migration; tests check it equals Alembic's head."""

PG_LOCK_KEY = 0x6D6C6F7073  # "mlops"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    """The schema's version as Alembic wrote it; None for a store with no schema yet."""
    with engine.connect() as conn:
        try:
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except exc.DBAPIError:
            conn.rollback()
            return None
    return found[0] if len(found) == 1 else None


def ensure_schema(engine: Engine) -> None:
    """Upgrade the store to HEAD if it is behind; a no-op read when it is current."""
    if current_revision(engine) == HEAD:
        return
    with _migration_lock(engine):
        if current_revision(engine) == HEAD:
            return
        from alembic import command

        with engine.connect() as conn:
            command.upgrade(alembic_config(conn), "head")
            conn.commit()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database
    assert database
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
