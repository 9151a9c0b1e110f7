"""Taking the rows out and in: each table as its ordered COPY text (the snapshot's files and
the row hashes of the checksum), and a snapshot's files back into staging tables.

A snapshot's file holds exactly the bytes of `COPY (SELECT * FROM t ORDER BY <primary key>)
TO STDOUT`; a table without a key is ordered by the text of its rows under collation "C".
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from psycopg import sql

from mlops.snapshots.driver import Snapshot, corrupt, read_meta, require_file, sha256_file
from mlops.snapshots.postgresql.catalog import Catalog, key_of, snapshot_checksum
from mlops.snapshots.postgresql.session import Cursor, relation

CHUNK = 1 << 20


def order_by(alias: str, key: Sequence[str]) -> sql.Composable:
    if key:
        return sql.SQL(", ").join(sql.Identifier(alias, k) for k in key)
    return sql.SQL("({}.*)::text COLLATE {}").format(sql.Identifier(alias), sql.Identifier("C"))


def copy_out(
    cur: Cursor,
    table: sql.Composable,
    key: Sequence[str],
    sink: Callable[[bytes], object] | None = None,
) -> tuple[str, int]:
    """SHA-256 and row count of the table's rows as ordered COPY text; each chunk to `sink`."""
    digest = hashlib.sha256()
    rows = 0
    statement = sql.SQL("COPY (SELECT * FROM {} AS t ORDER BY {}) TO STDOUT").format(
        table, order_by("t", key)
    )
    with cur.copy(statement) as copy:
        for chunk in copy:
            data = bytes(chunk)
            digest.update(data)
            rows += data.count(b"\n")
            if sink is not None:
                sink(data)
    return digest.hexdigest(), rows


def copy_in(cur: Cursor, table: sql.Composable, path: Path) -> None:
    with cur.copy(sql.SQL("COPY {} FROM STDIN").format(table)) as copy, open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            copy.write(chunk)


def write_tables(
    cur: Cursor, schema: str, catalog: Catalog, folder: Path
) -> dict[str, dict[str, Any]]:
    """Each table's rows into a file of `folder` (durably); the entries `snapshot.json` lists."""
    entries: dict[str, dict[str, Any]] = {}
    for i, (name, definition) in enumerate(sorted(catalog.definitions.items())):
        file = f"table-{i}.copy"
        with open(folder / file, "wb") as handle:
            digest, rows = copy_out(cur, relation(schema, name), key_of(definition), handle.write)
            handle.flush()
            os.fsync(handle.fileno())
        entries[name] = {
            "definition": definition,
            "file": file,
            "rows_sha256": digest,
            "rows": rows,
            "grants": catalog.grants[name],
            "identities": catalog.identities.get(name, {}),
        }
    return entries


def checked_meta(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot's metadata, once every file is present and matches its checksum."""
    meta = read_meta(snapshot)
    if meta.get("checksum") != snapshot.checksum:
        raise corrupt(snapshot, "its recorded checksum is not the one in the store")
    tables: dict[str, Any] = meta.get("tables", {})
    for name, entry in tables.items():
        path = Path(snapshot.location) / entry["file"]
        require_file(snapshot, path)
        if sha256_file(path) != entry["rows_sha256"]:
            raise corrupt(snapshot, f"the rows of table {name!r} changed")
    if snapshot_checksum(tables) != snapshot.checksum:
        raise corrupt(snapshot, "its table definitions changed")
    return meta


def stage_temp(cur: Cursor, i: int, entry: dict[str, Any], folder: Path) -> sql.Identifier:
    """The snapshot's rows of one table in a temporary table (no WAL, gone at COMMIT)."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(
            sql.Identifier(c["name"]),
            sql.SQL(c["type"] + (f" COLLATE {c['collation']}" if c["collation"] else "")),
        )
        for c in entry["definition"]["columns"]
    )
    name = f"mlops_stage_{i}"
    cur.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(
            sql.Identifier(name), columns
        )
    )
    staged = sql.Identifier("pg_temp", name)
    copy_in(cur, staged, folder / entry["file"])
    cur.execute(sql.SQL("ANALYZE {}").format(staged))
    return staged
