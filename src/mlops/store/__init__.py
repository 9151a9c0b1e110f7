"""The store: schema, migrations and the transactional Store (SQLite or PostgreSQL)."""

from mlops.store.store import Store

__all__ = ["Store"]
