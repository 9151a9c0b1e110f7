"""`SqliteSnapshot`: an SQLite database file.

Snapshot: the online backup API copies every page in one step, inside one read transaction
of the source, so the copy is consistent while others write (WAL) and row ids are kept.

Checksum (logical, so WAL frames and free pages do not matter): SHA-256 over the
`user_version`, every schema object (`type, name, tbl_name, sql` of `sqlite_master`, by type
and name, without `sqlite_*` internals), then, for each table by name, its rows in key order
(the declared primary key, else the rowid) in batches of 10,000, each batch column by column
(see `_hash_batch`). `sqlite_sequence` (AUTOINCREMENT counters) is left out: counters are
never rewound.

Restore: one write transaction on the live database with the snapshot attached read-only.
Rows are put back by key (delete, update, insert only the rows that differ); a table whose
definition changed is dropped and created from the snapshot's SQL; indexes, views and
triggers are set to the snapshot's. Before COMMIT the live database is verified equal to the
snapshot, value for value (schema, `user_version`, every row); the snapshot file's SHA-256
was checked first, so it is the file the snapshot's checksum was computed from. A crash
before COMMIT is rolled back by SQLite's journal or WAL; with WAL, readers keep reading the
old data until COMMIT and are never blocked.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlops.errors import (
    RestoreFailed,
    SnapshotFailed,
    UnreadableFile,
    UnsupportedResource,
)
from mlops.snapshots.driver import (
    Changes,
    RestoreResult,
    Snapshot,
    corrupt,
    delete_snapshot_folder,
    discard_folder,
    new_snapshot_folder,
    now_utc,
    read_meta,
    require_file,
    sha256_file,
    write_meta,
)

DATA_FILE = "data.sqlite"
COUNTED_AS = (
    "rows paired by primary key (else rowid) between the live database and the snapshot: "
    "added (only live), removed (only in the snapshot), modified (any value or type "
    "differs); a table added, dropped or with another definition counts once more"
)
BATCH = 10_000


def ident(*names: str) -> str:
    """A (qualified) identifier: each name in double quotes, joined by dots. SQLite has no
    quoting function of its own; every statement here quotes with this one."""
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


def column(alias: str, name: str) -> str:
    """Column `name` of row `alias`; the implicit `rowid` stays bare (it has no declaration
    for a quoted name to match)."""
    return f"{ident(alias)}.rowid" if name == "rowid" else ident(alias, name)


@dataclass(frozen=True)
class Table:
    name: str
    sql: str
    key: tuple[str, ...]
    """Primary-key columns, or ("rowid",) for a table without one."""
    columns: tuple[str, ...]
    """Stored (non-generated) columns, in order."""
    loose: frozenset[str] = frozenset()
    """Columns without type affinity, which may hold 1 and 1.0 alike."""

    @property
    def by_rowid(self) -> bool:
        return self.key == ("rowid",)

    @property
    def copied(self) -> list[str]:
        """The columns a copy of the table writes: the stored ones, and the rowid if it is
        the key."""
        return [*(["rowid"] if self.by_rowid else []), *self.columns]

    def key_order(self, alias: str) -> str:
        return ", ".join(column(alias, k) for k in self.key)

    def key_match(self, a: str, b: str) -> str:
        return " AND ".join(f"{column(a, k)} = {column(b, k)}" for k in self.key)


def same_row(a: str, b: str, columns: Sequence[str], loose: frozenset[str]) -> str:
    """SQL: every column holds the same value, so equal rows have equal checksums. In a
    column with affinity SQLite stores numbers in one storage class, so `IS` suffices; in a
    `loose` one, the storage class is compared too (1 is not 1.0)."""
    if not columns:
        return "1"

    def same(x: str, y: str, strict: bool) -> str:
        if not strict:
            return f"{x} IS {y} COLLATE BINARY"
        return f"({x} IS {y} COLLATE BINARY AND typeof({x}) = typeof({y}))"

    return " AND ".join(same(ident(a, c), ident(b, c), c in loose) for c in columns)


def _loose(declared: str, strict_table: bool) -> bool:
    kind = declared.upper()
    if strict_table:
        return kind == "ANY"
    return kind == "" or "BLOB" in kind


def db_path(location: str) -> Path:
    return Path(location.removeprefix("sqlite:///"))


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, uri=True)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    return conn


def _readonly_uri(path: Path) -> str:
    return f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"


def tables(conn: sqlite3.Connection, schema: str) -> dict[str, Table]:
    listed = conn.execute(f"PRAGMA {schema}.table_list").fetchall()
    found: dict[str, Table] = {}
    for _, name, kind, _, without_rowid, strict in listed:
        if name.startswith("sqlite_"):
            continue
        if kind in ("virtual", "shadow"):
            raise UnsupportedResource(
                f"table {name!r} is a {kind} table; the sqlite snapshot driver copies ordinary "
                "tables, indexes, views and triggers only"
            )
        if kind != "table":
            continue
        sql = conn.execute(
            f"SELECT sql FROM {ident(schema, 'sqlite_master')} WHERE type = 'table' AND name = ?",
            (name,),
        ).fetchone()[0]
        info = conn.execute(f"PRAGMA {schema}.table_xinfo({ident(name)})").fetchall()
        columns = tuple(row[1] for row in info if row[6] == 0)
        pk = tuple(row[1] for row in sorted(info, key=lambda r: r[5]) if row[5] > 0)
        if not pk and without_rowid:
            raise UnsupportedResource(f"table {name!r} has no key")
        loose = frozenset(row[1] for row in info if row[6] == 0 and _loose(row[2], bool(strict)))
        found[name] = Table(name, sql, pk or ("rowid",), columns, loose)
    return dict(sorted(found.items()))


def _schema_objects(conn: sqlite3.Connection, schema: str) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in conn.execute(
            f"SELECT type, name, tbl_name, sql FROM {ident(schema, 'sqlite_master')} "
            "WHERE substr(name, 1, 7) <> 'sqlite_' ORDER BY type, name"
        )
    ]


def logical_checksum(conn: sqlite3.Connection, schema: str = "main") -> tuple[str, dict[str, int]]:
    """The checksum of one attached database (call inside a transaction), and rows per table."""
    digest = hashlib.sha256()
    version = conn.execute(f"PRAGMA {schema}.user_version").fetchone()[0]
    digest.update(f"user_version {version}\n".encode())
    for obj in _schema_objects(conn, schema):
        digest.update(repr(obj).encode() + b"\n")
    counts: dict[str, int] = {}
    for table in tables(conn, schema).values():
        digest.update(f"table {table.name!r}\n".encode())
        cursor = conn.execute(
            f"SELECT * FROM {ident(schema, table.name)} AS t ORDER BY {table.key_order('t')}"
        )
        n = 0
        while rows := cursor.fetchmany(BATCH):
            n += len(rows)
            _hash_batch(digest, rows)
        counts[table.name] = n
    return digest.hexdigest(), counts


def _packed(values: array[Any]) -> bytes:
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def _hash_batch(digest: Any, rows: list[tuple[Any, ...]]) -> None:
    """The row count, then each column: all REAL as little-endian doubles, all INTEGER as
    little-endian int64, all TEXT as int64 UTF-8 lengths then the bytes; any other column
    (NULLs, BLOBs, mixed storage classes) as the Python `repr` of its values, length first.
    -0.0 counts as 0.0, as in SQLite's own comparisons and text."""
    digest.update(struct.pack("<q", len(rows)))
    for column in zip(*rows, strict=True):
        if 0.0 in column:
            column = tuple(v + 0.0 if type(v) is float else v for v in column)
        kinds = set(map(type, column))
        if kinds == {float}:
            digest.update(b"r" + _packed(array("d", column)))
        elif kinds == {int}:
            digest.update(b"i" + _packed(array("q", column)))
        elif kinds == {str}:
            encoded = [v.encode() for v in column]
            digest.update(b"t" + _packed(array("q", map(len, encoded))) + b"".join(encoded))
        else:
            text = repr(column).encode()
            digest.update(b"v" + struct.pack("<q", len(text)) + text)


def count_changes(conn: sqlite3.Connection, live: str = "main", snap: str = "snap") -> Changes:
    """How `live` differs from `snap`, both attached to `conn` (call inside a transaction)."""
    before = tables(conn, snap)
    after = tables(conn, live)
    added = removed = modified = t_added = t_dropped = t_altered = 0

    def count(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    for name in after:
        if name not in before:
            t_added += 1
            added += count(f"SELECT count(*) FROM {ident(live, name)}")
    for name, old in before.items():
        new = after.get(name)
        if new is None:
            t_dropped += 1
            removed += count(f"SELECT count(*) FROM {ident(snap, name)}")
            continue
        if new.sql != old.sql:
            t_altered += 1
        lt, st = ident(live, name), ident(snap, name)
        if new.key != old.key:
            added += count(f"SELECT count(*) FROM {lt}")
            removed += count(f"SELECT count(*) FROM {st}")
            continue
        on = old.key_match("a", "b")
        added += count(
            f"SELECT count(*) FROM {lt} a WHERE NOT EXISTS (SELECT 1 FROM {st} b WHERE {on})"
        )
        removed += count(
            f"SELECT count(*) FROM {st} b WHERE NOT EXISTS (SELECT 1 FROM {lt} a WHERE {on})"
        )
        shared = [c for c in old.columns if c in new.columns]
        differs = f"NOT ({same_row('a', 'b', shared, old.loose | new.loose)})"
        modified += count(f"SELECT count(*) FROM {lt} a JOIN {st} b ON {on} WHERE {differs}")
    return Changes("rows", added, removed, modified, t_added, t_dropped, t_altered)


class SqliteSnapshot:
    """Snapshots of an SQLite database file (given as a path or an `sqlite:///` URL)."""

    name = "sqlite"

    def __init__(
        self, *, busy_timeout_s: float = 30.0, now: Callable[[], datetime] = now_utc
    ) -> None:
        self.busy_timeout_s = busy_timeout_s
        self._now = now

    def _live(self, location: str) -> Path:
        path = db_path(location)
        if not path.is_file():
            raise UnreadableFile(f"SQLite database {path} does not exist")
        return path

    @contextmanager
    def _open(self, path: Path) -> Iterator[sqlite3.Connection]:
        try:
            conn = _connect(path, self.busy_timeout_s)
        except sqlite3.Error as exc:
            raise UnreadableFile(f"cannot open SQLite database {path}: {exc}") from None
        with closing(conn):
            yield conn

    def snapshot(self, location: str, into: Path, *, resource: str) -> Snapshot:
        path = self._live(location)
        at = self._now()
        folder = new_snapshot_folder(into, resource, at)
        copy = folder / DATA_FILE
        try:
            with self._open(path) as src, closing(sqlite3.connect(copy)) as dst:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
            with closing(sqlite3.connect(_readonly_uri(copy), uri=True)) as conn:
                conn.execute("BEGIN")
                checksum, counts = logical_checksum(conn)
            os.chmod(copy, 0o444)
            snap = Snapshot(
                resource=resource,
                driver=self.name,
                location=str(folder),
                checksum=checksum,
                size_bytes=copy.stat().st_size,
                created_at=at,
                details={"tables": counts, "source": str(path)},
            )
            write_meta(folder, snap, {"file": DATA_FILE, "file_sha256": sha256_file(copy)})
        except BaseException as exc:
            discard_folder(folder)
            if isinstance(exc, sqlite3.Error | OSError):
                raise SnapshotFailed(f"cannot snapshot SQLite database {path}: {exc}") from None
            raise
        return snap

    def checksum(self, location: str) -> str:
        path = self._live(location)
        with self._open(path) as conn:
            conn.execute("BEGIN")
            return logical_checksum(conn)[0]

    def _checked_copy(self, snapshot: Snapshot) -> Path:
        meta = read_meta(snapshot)
        copy = Path(snapshot.location) / DATA_FILE
        require_file(snapshot, copy)
        if meta.get("checksum") != snapshot.checksum:
            raise corrupt(snapshot, "its recorded checksum is not the one in the store")
        if sha256_file(copy) != meta.get("file_sha256"):
            raise corrupt(snapshot, f"the bytes of {DATA_FILE} changed")
        return copy

    def changes_since(self, snapshot: Snapshot, location: str) -> Changes:
        copy = self._checked_copy(snapshot)
        path = self._live(location)
        with self._open(path) as conn:
            conn.execute("ATTACH DATABASE ? AS snap", (_readonly_uri(copy),))
            conn.execute("BEGIN")
            try:
                return count_changes(conn)
            finally:
                conn.execute("ROLLBACK")

    def restore(self, snapshot: Snapshot, location: str) -> RestoreResult:
        started = time.monotonic()
        copy = self._checked_copy(snapshot)
        path = self._live(location)
        with self._open(path) as conn:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("ATTACH DATABASE ? AS snap", (_readonly_uri(copy),))
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise RestoreFailed(
                    f"cannot restore {snapshot.resource!r}: {path} stayed locked by another "
                    f"writer for {self.busy_timeout_s:g} s ({exc}); nothing was changed"
                ) from None
            try:
                changes = count_changes(conn)
                _put_back(conn)
                left = _differences(conn)
                if left:
                    raise RestoreFailed(
                        f"restore of {snapshot.resource!r} did not verify ({left}); it was undone"
                    )
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise RestoreFailed(
                        f"restore of {snapshot.resource!r} failed and was undone: {exc}"
                    ) from None
                raise
        return RestoreResult.verified_restore(snapshot, changes, COUNTED_AS, started)

    def recover(self, location: str) -> None:
        """SQLite rolls back an interrupted transaction itself when the file is next opened."""
        path = db_path(location)
        if path.is_file():
            with self._open(path) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def delete(self, snapshot: Snapshot) -> None:
        delete_snapshot_folder(snapshot)


def _differences(conn: sqlite3.Connection) -> str:
    """What still tells `main` from `snap`: nothing ("") when they hold the same schema,
    `user_version` and rows, value for value; then, the snapshot file's bytes being the
    ones its checksum was computed from, `main` has that checksum too."""
    if _schema_objects(conn, "main") != _schema_objects(conn, "snap"):
        return "the schema differs"
    versions = [conn.execute(f"PRAGMA {s}.user_version").fetchone()[0] for s in ("main", "snap")]
    if versions[0] != versions[1]:
        return "user_version differs"
    left = count_changes(conn)
    return "" if left.total == 0 else f"rows still differ: {left.describe()}"


def _put_back(conn: sqlite3.Connection) -> None:
    """Make `main` equal `snap`, inside the caller's transaction."""
    live = tables(conn, "main")
    snap = tables(conn, "snap")
    snap_objects = _schema_objects(conn, "snap")
    for kind, name, _, _ in _schema_objects(conn, "main"):
        if kind in ("trigger", "view"):
            conn.execute(f"DROP {kind.upper()} IF EXISTS {ident('main', name)}")
    for name in live:
        if name not in snap or live[name].sql != snap[name].sql:
            conn.execute(f"DROP TABLE {ident('main', name)}")
    for name, table in snap.items():
        if name in live and live[name].sql == table.sql:
            _put_rows_back(conn, table)
        else:
            conn.execute(table.sql)
            _insert_all(conn, table)
    wanted = {(name, sql) for kind, name, _, sql in snap_objects if kind == "index" and sql}
    for kind, name, _, sql in _schema_objects(conn, "main"):
        if kind == "index" and sql and (name, sql) not in wanted:
            conn.execute(f"DROP INDEX {ident('main', name)}")
    present = {name for kind, name, _, _ in _schema_objects(conn, "main") if kind == "index"}
    for kind, name, _, sql in snap_objects:
        if kind == "index" and sql and name not in present:
            conn.execute(sql)
    for kind, _, _, sql in snap_objects:
        if kind in ("view", "trigger"):
            conn.execute(sql)
    version = conn.execute("PRAGMA snap.user_version").fetchone()[0]
    conn.execute(f"PRAGMA main.user_version = {int(version)}")


def _insert_all(conn: sqlite3.Connection, table: Table) -> None:
    listed = ", ".join(k if k == "rowid" else ident(k) for k in table.copied)
    conn.execute(
        f"INSERT INTO {ident('main', table.name)} ({listed}) "
        f"SELECT {listed} FROM {ident('snap', table.name)}"
    )


def _put_rows_back(conn: sqlite3.Connection, table: Table) -> None:
    """Delete, update and insert only the rows that differ; all rows if that trips a UNIQUE."""
    lt, st = ident("main", table.name), ident("snap", table.name)
    on = table.key_match("a", "b")
    conn.execute("SAVEPOINT rows")
    try:
        conn.execute(f"DELETE FROM {lt} AS a WHERE NOT EXISTS (SELECT 1 FROM {st} b WHERE {on})")
        if table.columns:
            sets = ", ".join(f"{ident(c)} = {ident('b', c)}" for c in table.columns)
            conn.execute(
                f"UPDATE {lt} AS a SET {sets} FROM {st} AS b "
                f"WHERE {on} AND NOT ({same_row('a', 'b', table.columns, table.loose)})"
            )
        listed = ", ".join(k if k == "rowid" else ident(k) for k in table.copied)
        picked = ", ".join(column("b", k) for k in table.copied)
        conn.execute(
            f"INSERT INTO {lt} ({listed}) SELECT {picked} FROM {st} AS b "
            f"WHERE NOT EXISTS (SELECT 1 FROM {lt} a WHERE {on})"
        )
    except sqlite3.IntegrityError:
        conn.execute("ROLLBACK TO rows")
        conn.execute(f"DELETE FROM {lt}")
        _insert_all(conn, table)
    conn.execute("RELEASE rows")
