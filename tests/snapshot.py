"""The whole content of a store and its artifact folder, to prove an operation changed nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from mlops.store.schema import metadata


def store_content(url: str, home: Path) -> dict[str, Any]:
    engine = create_engine(url)
    tables: dict[str, Any] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            tables[table.name] = sorted(repr(tuple(row)) for row in rows)
    engine.dispose()
    artifacts = home / "artifacts"
    stored = artifacts.rglob("*") if artifacts.exists() else iter(())
    files = sorted(
        str(p.relative_to(artifacts)) for p in stored if p.is_file() and "tmp" not in p.parts
    )
    return {"tables": tables, "artifacts": files}
