"""`PostgresSnapshot`: the tables of one schema of a PostgreSQL database.

Snapshot: one `REPEATABLE READ READ ONLY` transaction (one MVCC snapshot, as pg_dump takes)
that holds ACCESS SHARE locks on the schema's tables (DDL on them waits; reads and writes do
not), records each table's definition and writes its rows with
`COPY (SELECT * FROM t ORDER BY <primary key>) TO STDOUT` into a file. Nobody is
disconnected.

Checksum: SHA-256 of the canonical JSON of, per table, its definition (columns with types,
defaults, NOT NULL, collation and identity; constraints; other indexes) and the SHA-256 of
that ordered COPY text (the snapshot's file has exactly those bytes). Sessions run with
fixed output settings (UTC, ISO dates, `extra_float_digits = 1`, hex bytea).

Restore: one transaction (see docs/snapshots.md for the method, the locks and why):
1. the snapshot's rows go into staging tables (temporary ones for tables whose definition
   is unchanged, new tables under temporary names in the schema for the others);
2. `LOCK TABLE ... IN EXCLUSIVE MODE` on the live tables: writers wait, readers do not;
3. the writes since the snapshot are counted (row by row, by primary key);
4. tables with an unchanged definition get back only the rows that differ (DELETE,
   UPDATE, INSERT); readers keep seeing the old rows (MVCC) until COMMIT;
5. rows are verified; tables whose definition changed, or that the release added, are
   swapped (DROP, RENAME) under ACCESS EXCLUSIVE locks held only for this last step, which
   readers of those tables wait for;
6. definitions are verified, then COMMIT. A crash before COMMIT undoes everything.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors

from mlops.errors import (
    MlopsError,
    RestoreFailed,
    SnapshotFailed,
    UnsupportedResource,
)
from mlops.snapshots.driver import (
    Changes,
    RestoreResult,
    Snapshot,
    canonical_sha256,
    corrupt,
    delete_folder,
    folder_size,
    new_snapshot_folder,
    now_utc,
    read_meta,
    require_file,
    sha256_file,
    write_meta,
)

COUNTED_AS = (
    "rows paired by primary key between the live tables and the snapshot: added (only "
    "live), removed (only in the snapshot), modified (the text of a shared column differs); "
    "tables without a key are compared as multisets of rows; a table added, dropped or with "
    "another definition counts once more"
)
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


def qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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


@dataclass
class Catalog:
    """What the driver knows of one schema's tables."""

    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    foreign_keys: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(table, constraint, definition, referenced table) for every FK in the schema."""
    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    owned_sequences: dict[str, list[str]] = field(default_factory=dict)
    """Table -> sequences owned by its columns (serial), not identity sequences."""
    identities: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Table -> identity column -> {"sequence": its name, "value": its last value}."""


def read_catalog(cur: Cursor, schema: str, *, strict: bool = False) -> Catalog:
    """The schema's tables and their definitions.

    What a restore could not put back faithfully (triggers, rules, row-level security,
    partitions, inheritance, generated columns) is refused when `strict` (a snapshot);
    otherwise it is noted in the table's definition, so that the table differs from any
    snapshot's and a restore replaces it whole.
    """
    cur.execute(
        """
        SELECT c.relname, c.relkind, c.relpersistence = 'u',
               EXISTS (SELECT 1 FROM pg_inherits i WHERE c.oid IN (i.inhrelid, i.inhparent)),
               EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
               EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid),
               c.relrowsecurity,
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                       AND a.attgenerated <> '' AND NOT a.attisdropped),
               pg_get_userbyid(c.relowner),
               coalesce((SELECT json_agg(json_build_array(
                            CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                                 ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                            a.privilege_type, a.is_grantable)
                            ORDER BY a.grantee, a.privilege_type)
                         FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner), '[]')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
        ORDER BY c.relname
        """,
        (schema,),
    )
    catalog = Catalog()
    problems: list[str] = []
    for name, kind, unlogged, inherits, triggers, rules, rls, generated, owner, acl in cur:
        unsupported = [
            what
            for bad, what in (
                (kind == "p", "is partitioned"),
                (inherits, "takes part in inheritance"),
                (triggers, "has triggers"),
                (rules, "has rules"),
                (rls, "has row-level security"),
                (generated, "has generated columns"),
            )
            if bad
        ]
        problems += [f"table {name!r} {what}" for what in unsupported]
        catalog.definitions[name] = {
            "unlogged": bool(unlogged),
            "columns": [],
            "constraints": [],
            "indexes": [],
            "key": [],
            **({"unsupported": unsupported} if unsupported else {}),
        }
        catalog.grants[name] = {"owner": owner, "acl": acl}
    if problems and strict:
        raise UnsupportedResource(
            f"schema {schema!r} holds what the postgresql snapshot driver cannot restore: "
            + "; ".join(problems)
        )
    if not catalog.definitions:
        return catalog
    cur.execute(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid),
               CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                    THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END,
               a.attidentity, s.relname, pg_sequence_last_value(s.oid)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
        LEFT JOIN pg_depend dep ON dep.refclassid = 'pg_class'::regclass
             AND dep.refobjid = c.oid AND dep.refobjsubid = a.attnum AND dep.deptype = 'i'
             AND dep.classid = 'pg_class'::regclass
        LEFT JOIN pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
        WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
          AND (dep.objid IS NULL OR s.oid IS NOT NULL)
        ORDER BY c.relname, a.attnum
        """,
        (schema,),
    )
    for table, column, type_, not_null, default, collation, identity, sequence, value in cur:
        if table not in catalog.definitions:
            continue
        catalog.definitions[table]["columns"].append(
            {
                "name": column,
                "type": type_,
                "not_null": not_null,
                "default": default,
                "collation": collation,
                "identity": identity,
            }
        )
        if identity and sequence:
            catalog.identities.setdefault(table, {})[column] = {
                "sequence": sequence,
                "value": value,
            }
    cur.execute(
        """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), r.relname
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_class r ON r.oid = k.confrelid
        WHERE n.nspname = %s AND c.relkind = 'r'
        ORDER BY c.relname, k.conname
        """,
        (schema,),
    )
    for table, name, kind, definition, referenced in cur:
        if table not in catalog.definitions:
            continue
        catalog.definitions[table]["constraints"].append(
            {"name": name, "type": kind, "definition": definition}
        )
        if kind == "f":
            catalog.foreign_keys.append((table, name, definition, referenced))
    cur.execute(
        """
        SELECT tc.relname, ic.relname, i.indisunique, pg_get_indexdef(i.indexrelid), am.amname
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class tc ON tc.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = tc.relnamespace
        JOIN pg_am am ON am.oid = ic.relam
        WHERE n.nspname = %s AND tc.relkind = 'r'
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                          AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
        ORDER BY tc.relname, ic.relname
        """,
        (schema,),
    )
    for table, name, unique, definition, method in cur:
        if table not in catalog.definitions:
            continue
        marker = f" USING {method} "
        using = definition[definition.index(marker) + len(" USING ") :]
        catalog.definitions[table]["indexes"].append(
            {"name": name, "unique": unique, "using": using}
        )
    cur.execute(
        """
        SELECT c.relname, array_agg(a.attname ORDER BY k.ord)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE n.nspname = %s AND i.indisprimary
        GROUP BY c.relname
        """,
        (schema,),
    )
    for table, columns in cur:
        if table in catalog.definitions:
            catalog.definitions[table]["key"] = list(columns)
    cur.execute(
        """
        SELECT t.relname, s.relname
        FROM pg_class s
        JOIN pg_namespace n ON n.oid = s.relnamespace
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                        AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
        JOIN pg_class t ON t.oid = d.refobjid
        WHERE n.nspname = %s AND s.relkind = 'S'
        ORDER BY t.relname, s.relname
        """,
        (schema,),
    )
    for table, sequence in cur:
        catalog.owned_sequences.setdefault(table, []).append(sequence)
    return catalog


def read_sequences(cur: Cursor, schema: str) -> list[dict[str, Any]]:
    """The schema's sequences that no identity column owns, with their settings and value."""
    cur.execute(
        """
        SELECT s.relname, format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement,
               q.seqmin, q.seqmax, q.seqcache, q.seqcycle, pg_sequence_last_value(s.oid),
               (SELECT json_build_array(t.relname, a.attname)
                FROM pg_depend d
                JOIN pg_class t ON t.oid = d.refobjid
                JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a')
        FROM pg_class s
        JOIN pg_namespace n ON n.oid = s.relnamespace
        JOIN pg_sequence q ON q.seqrelid = s.oid
        WHERE n.nspname = %s AND s.relkind = 'S'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = s.oid AND d.deptype = 'i')
        ORDER BY s.relname
        """,
        (schema,),
    )
    return [
        {
            "name": name,
            "type": type_,
            "start": start,
            "increment": increment,
            "min": minimum,
            "max": maximum,
            "cache": cache,
            "cycle": cycle,
            "value": value,
            "owned_by": owned_by,
        }
        for name, type_, start, increment, minimum, maximum, cache, cycle, value, owned_by in cur
    ]


def order_by(alias: str, key: Sequence[str]) -> str:
    if key:
        return ", ".join(f"{alias}.{qi(k)}" for k in key)
    return f'({alias}.*)::text COLLATE "C"'


def copy_out(
    cur: Cursor, relation: str, key: Sequence[str], sink: Callable[[bytes], object] | None = None
) -> tuple[str, int]:
    """SHA-256 and row count of the relation's rows as ordered COPY text; each chunk to `sink`."""
    digest = hashlib.sha256()
    rows = 0
    with cur.copy(
        f"COPY (SELECT * FROM {relation} AS t ORDER BY {order_by('t', key)}) TO STDOUT"
    ) as copy:
        for chunk in copy:
            data = bytes(chunk)
            digest.update(data)
            rows += data.count(b"\n")
            if sink is not None:
                sink(data)
    return digest.hexdigest(), rows


def copy_in(cur: Cursor, relation: str, path: Path) -> None:
    with cur.copy(f"COPY {relation} FROM STDIN") as copy, open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            copy.write(chunk)


def compose_checksum(definitions: dict[str, Any], row_hashes: dict[str, str]) -> str:
    return canonical_sha256(
        {
            "tables": {
                name: {"definition": definitions[name], "rows_sha256": row_hashes[name]}
                for name in sorted(definitions)
            }
        }
    )


def column_sql(column: dict[str, Any]) -> str:
    parts = [qi(column["name"]), column["type"]]
    if column["collation"]:
        parts.append(f"COLLATE {column['collation']}")
    if column["identity"] == "a":
        parts.append("GENERATED ALWAYS AS IDENTITY")
    elif column["identity"] == "d":
        parts.append("GENERATED BY DEFAULT AS IDENTITY")
    elif column["default"] is not None:
        parts.append(f"DEFAULT {column['default']}")
    if column["not_null"]:
        parts.append("NOT NULL")
    return " ".join(parts)


EXACT_EQUALITY = {
    "bigint",
    "integer",
    "smallint",
    "boolean",
    "date",
    "uuid",
    "bytea",
    "timestamp with time zone",
    "timestamp without time zone",
}
"""Types whose `=` holds exactly when their text output is equal."""
TEXT_TYPE = re.compile(r"(text|character varying|character)(\(\d+\))?(\[\])*")
"""Text types (and arrays of them), exact under the byte-wise collation "C"."""


def column_differs(a: str, b: str, name: str, type_a: str, type_b: str) -> str:
    """SQL: the column's values in rows `a` and `b` differ as data (as their text output
    would), compared natively where that is exact, since text output costs ~4x more."""
    x, y = f"{a}.{qi(name)}", f"{b}.{qi(name)}"
    if type_a != type_b:
        return f"{x}::text IS DISTINCT FROM {y}::text"
    if type_a in EXACT_EQUALITY:
        return f"{x} IS DISTINCT FROM {y}"
    if TEXT_TYPE.fullmatch(type_a):
        return f'{x} COLLATE "C" IS DISTINCT FROM {y} COLLATE "C"'
    if type_a in ("double precision", "real"):
        return f"({x} IS DISTINCT FROM {y} OR ({x} = 0 AND {x}::text <> {y}::text))"
    return f"{x}::text IS DISTINCT FROM {y}::text"


def count_table(
    cur: Cursor,
    live: str,
    staged: str,
    live_columns: dict[str, str],
    snap_columns: dict[str, str],
    key: Sequence[str] | None,
    keep_as: str | None = None,
) -> tuple[int, int, int]:
    """(added, removed, modified) rows of `live` against `staged`, on their shared columns
    (name -> type).

    With a key and `keep_as`, the differing keys are also kept in that temporary table
    (`only_live`, `only_snap`, `k0`, `k1`, ...), so that putting rows back reads them
    instead of comparing every row again.
    """
    shared = [c for c in snap_columns if c in live_columns]

    def row(alias: str) -> str:
        return f"ROW({', '.join(f'{alias}.{qi(c)}' for c in shared)})::text" if shared else "''"

    differs = (
        " OR ".join(column_differs("l", "s", c, live_columns[c], snap_columns[c]) for c in shared)
        or "false"
    )

    if key:
        on = " AND ".join(f"l.{qi(k)} = s.{qi(k)}" for k in key)
        first = qi(key[0])
        flags = f"s.{first} IS NULL AS only_live, l.{first} IS NULL AS only_snap"
        differing = (
            f"FROM {live} AS l FULL JOIN {staged} AS s ON {on} WHERE l.{first} IS NULL "
            f"OR s.{first} IS NULL OR {differs}"
        )
        if keep_as is None:
            source = f"(SELECT {flags} {differing}) AS d"
        else:
            keys = ", ".join(
                f"CASE WHEN l.{first} IS NULL THEN s.{qi(k)} ELSE l.{qi(k)} END AS k{j}"
                for j, k in enumerate(key)
            )
            cur.execute(
                f"CREATE TEMPORARY TABLE {keep_as} ON COMMIT DROP AS "
                f"SELECT {flags}, {keys} {differing}"
            )
            source = keep_as
        cur.execute(
            "SELECT count(*) FILTER (WHERE only_live), count(*) FILTER (WHERE only_snap), "
            f"count(*) FILTER (WHERE NOT only_live AND NOT only_snap) FROM {source}"
        )
        added, removed, modified = cur.fetchone() or (0, 0, 0)
        return int(added), int(removed), int(modified)
    cur.execute(
        f"SELECT count(*) FROM (SELECT {row('l')} FROM {live} AS l "
        f"EXCEPT ALL SELECT {row('s')} FROM {staged} AS s) AS x"
    )
    added = int((cur.fetchone() or (0,))[0])
    cur.execute(
        f"SELECT count(*) FROM (SELECT {row('s')} FROM {staged} AS s "
        f"EXCEPT ALL SELECT {row('l')} FROM {live} AS l) AS x"
    )
    removed = int((cur.fetchone() or (0,))[0])
    return added, removed, 0


def _names(definition: dict[str, Any]) -> list[str]:
    return [c["name"] for c in definition["columns"]]


def _types(definition: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in definition["columns"]}


def _key(definition: dict[str, Any]) -> list[str]:
    return list(definition["key"])


def _relation(schema: str, table: str) -> str:
    return f"{qi(schema)}.{qi(table)}"


class PostgresSnapshot:
    """Snapshots of the tables of one schema, given as a URL (`?schema=` names the schema)."""

    name = "postgresql"

    def __init__(
        self,
        *,
        schema: str | None = None,
        lock_timeout_s: float = 30.0,
        lock_attempt_s: float = 0.2,
        connect_timeout_s: int = 10,
        now: Callable[[], datetime] = now_utc,
    ) -> None:
        self.schema = schema
        self.lock_timeout_s = lock_timeout_s
        self.lock_attempt_s = lock_attempt_s
        self.connect_timeout_s = connect_timeout_s
        self._now = now

    @contextmanager
    def _connect(self, location: str, error: type[MlopsError]) -> Iterator[tuple[Connection, str]]:
        url, schema = split_location(location, self.schema)
        options: dict[str, Any] = {"connect_timeout": self.connect_timeout_s}
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

    def _lock(self, cur: Cursor, schema: str, tables: Sequence[str], mode: str) -> None:
        """Take `mode` on the tables in short attempts, so that readers queued behind a
        waiting ACCESS EXCLUSIVE request wait at most one attempt."""
        if not tables:
            return
        listed = ", ".join(_relation(schema, t) for t in sorted(tables))
        deadline = time.monotonic() + self.lock_timeout_s
        pause = 0.05
        while True:
            cur.execute("SAVEPOINT mlops_lock")
            try:
                cur.execute(f"SET LOCAL lock_timeout = '{int(self.lock_attempt_s * 1000)}ms'")
                cur.execute(f"LOCK TABLE {listed} IN {mode} MODE")
                cur.execute("SET LOCAL lock_timeout = 0")
                cur.execute("RELEASE SAVEPOINT mlops_lock")
                return
            except pg_errors.LockNotAvailable:
                cur.execute("ROLLBACK TO SAVEPOINT mlops_lock")
                if time.monotonic() > deadline:
                    raise RestoreFailed(
                        f"could not lock {listed} in {mode} mode within "
                        f"{self.lock_timeout_s:g} s: another session holds a conflicting lock "
                        "(a long transaction or DDL); nothing was changed"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self, location: str, into: Path, *, resource: str) -> Snapshot:
        at = self._now()
        with self._connect(location, SnapshotFailed) as (conn, schema):
            folder = new_snapshot_folder(into, resource, at)
            try:
                return self._snapshot(conn, schema, folder, resource, at)
            except BaseException as exc:
                delete_folder(str(folder))
                if isinstance(exc, psycopg.Error):
                    raise SnapshotFailed(
                        f"cannot snapshot schema {schema!r}: {str(exc).strip()}"
                    ) from None
                raise

    def _snapshot(
        self, conn: Connection, schema: str, folder: Path, resource: str, at: datetime
    ) -> Snapshot:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction(), conn.cursor() as cur:
            catalog = read_catalog(cur, schema, strict=True)
            if catalog.definitions:
                listed = ", ".join(_relation(schema, t) for t in catalog.definitions)
                cur.execute(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_s * 1000)}ms'")
                cur.execute(f"LOCK TABLE {listed} IN ACCESS SHARE MODE")
            entries: dict[str, dict[str, Any]] = {}
            for i, (name, definition) in enumerate(sorted(catalog.definitions.items())):
                file = f"table-{i}.copy"
                with open(folder / file, "wb") as handle:
                    digest, rows = copy_out(
                        cur, _relation(schema, name), _key(definition), handle.write
                    )
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
            sequences = read_sequences(cur, schema)
        snap = Snapshot(
            resource=resource,
            driver=self.name,
            location=str(folder),
            checksum=_snapshot_checksum(entries),
            size_bytes=folder_size(folder),
            created_at=at,
            details={"schema": schema, "tables": {n: e["rows"] for n, e in entries.items()}},
        )
        write_meta(folder, snap, {"schema": schema, "tables": entries, "sequences": sequences})
        return snap

    # -- checksum -------------------------------------------------------------------------

    def checksum(self, location: str) -> str:
        with self._connect(location, SnapshotFailed) as (conn, schema):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            try:
                with conn.transaction(), conn.cursor() as cur:
                    catalog = read_catalog(cur, schema)
                    hashes = {
                        name: copy_out(cur, _relation(schema, name), _key(definition))[0]
                        for name, definition in catalog.definitions.items()
                    }
                    return compose_checksum(catalog.definitions, hashes)
            except psycopg.Error as exc:
                raise SnapshotFailed(f"cannot read schema {schema!r}: {exc}") from None

    # -- changes --------------------------------------------------------------------------

    def _checked(self, snapshot: Snapshot) -> dict[str, Any]:
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
        if _snapshot_checksum(tables) != snapshot.checksum:
            raise corrupt(snapshot, "its table definitions changed")
        return meta

    def changes_since(self, snapshot: Snapshot, location: str) -> Changes:
        meta = self._checked(snapshot)
        folder = Path(snapshot.location)
        with self._connect(location, SnapshotFailed) as (conn, schema):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            try:
                with conn.cursor() as cur:
                    live = read_catalog(cur, schema)
                    staged = {
                        name: self._stage_temp(cur, i, entry, folder)
                        for i, (name, entry) in enumerate(sorted(meta["tables"].items()))
                    }
                    return _count(cur, schema, live, meta["tables"], staged)[0]
            except psycopg.Error as exc:
                raise SnapshotFailed(f"cannot compare schema {schema!r}: {exc}") from None
            finally:
                conn.rollback()

    def _stage_temp(self, cur: Cursor, i: int, entry: dict[str, Any], folder: Path) -> str:
        """The snapshot's rows of one table in a temporary table (no WAL, gone at COMMIT)."""
        columns = ", ".join(
            f"{qi(c['name'])} {c['type']}"
            + (f" COLLATE {c['collation']}" if c["collation"] else "")
            for c in entry["definition"]["columns"]
        )
        relation = f"pg_temp.mlops_stage_{i}"
        cur.execute(f"CREATE TEMPORARY TABLE mlops_stage_{i} ({columns}) ON COMMIT DROP")
        copy_in(cur, relation, folder / entry["file"])
        cur.execute(f"ANALYZE {relation}")
        return relation

    # -- restore --------------------------------------------------------------------------

    def restore(self, snapshot: Snapshot, location: str) -> RestoreResult:
        started = time.monotonic()
        meta = self._checked(snapshot)
        with self._connect(location, RestoreFailed) as (conn, schema):
            conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            try:
                with conn.cursor() as cur:
                    changes = self._restore(cur, schema, snapshot, meta)
                conn.commit()
            except BaseException as exc:
                conn.rollback()
                if isinstance(exc, psycopg.Error):
                    raise RestoreFailed(
                        f"restore of {snapshot.resource!r} failed and was undone: "
                        f"{str(exc).strip()}"
                    ) from None
                raise
        return RestoreResult.verified_restore(snapshot, changes, COUNTED_AS, started)

    def _restore(
        self, cur: Cursor, schema: str, snapshot: Snapshot, meta: dict[str, Any]
    ) -> Changes:
        folder = Path(snapshot.location)
        tables: dict[str, Any] = meta["tables"]
        sequences: list[dict[str, Any]] = meta.get("sequences", [])
        live = read_catalog(cur, schema)
        in_place = _tables_kept_in_place(live, tables)
        rebuilt = sorted(n for n in tables if n not in in_place)
        dropped = sorted(n for n in live.definitions if n not in tables)
        _create_missing_sequences(cur, schema, sequences)

        token = secrets.token_hex(4)
        staged: dict[str, str] = {}
        renames: dict[str, list[tuple[str, str]]] = {}
        for i, name in enumerate(sorted(tables)):
            if name in in_place:
                staged[name] = self._stage_temp(cur, i, tables[name], folder)
            else:
                staged[name], renames[name] = _stage_rebuild(
                    cur, schema, f"mlops_restore_{token}_{i}", tables[name], folder
                )

        self._lock(cur, schema, list(live.definitions), "EXCLUSIVE")
        changes, changed = _count(cur, schema, live, tables, staged, keep=sorted(in_place))
        _put_rows_back(
            cur, schema, [n for n in in_place if changed[n]], tables, staged, live.foreign_keys
        )
        for name in sorted(tables):
            relation = _relation(schema, name) if name in in_place else staged[name]
            if (
                copy_out(cur, relation, _key(tables[name]["definition"]))[0]
                != tables[name]["rows_sha256"]
            ):
                raise RestoreFailed(
                    f"restore of {snapshot.resource!r} did not verify: the rows of table "
                    f"{name!r} differ from the snapshot's; it was undone"
                )

        if rebuilt or dropped:
            self._swap(cur, schema, live, tables, sequences, rebuilt, dropped, staged, renames)

        after = read_catalog(cur, schema).definitions
        if (
            set(after) != set(tables)
            or compose_checksum(after, {n: tables[n]["rows_sha256"] for n in after})
            != snapshot.checksum
        ):
            raise RestoreFailed(
                f"restore of {snapshot.resource!r} did not verify: the tables or their "
                "definitions differ from the snapshot's; it was undone"
            )
        _advance_sequences(cur, schema, sequences)
        return changes

    def _swap(
        self,
        cur: Cursor,
        schema: str,
        live: Catalog,
        tables: dict[str, Any],
        sequences: list[dict[str, Any]],
        rebuilt: list[str],
        dropped: list[str],
        staged: dict[str, str],
        renames: dict[str, list[tuple[str, str]]],
    ) -> None:
        """Replace the rebuilt tables and drop the added ones, under ACCESS EXCLUSIVE locks."""
        going = sorted({*dropped, *(n for n in rebuilt if n in live.definitions)})
        self._lock(cur, schema, going, "ACCESS EXCLUSIVE")
        kept = {s["name"] for s in sequences}
        for table in going:
            for sequence in live.owned_sequences.get(table, []):
                if sequence in kept:
                    cur.execute(f"ALTER SEQUENCE {_relation(schema, sequence)} OWNED BY NONE")
        for table in going:
            cur.execute("SAVEPOINT mlops_drop")
            try:
                cur.execute(f"DROP TABLE IF EXISTS {_relation(schema, table)}")
            except pg_errors.DependentObjectsStillExist as exc:
                raise RestoreFailed(
                    f"cannot replace table {table!r}: other objects depend on it "
                    f"({str(exc).strip()}); nothing was changed"
                ) from None
            cur.execute("RELEASE SAVEPOINT mlops_drop")
        for name in rebuilt:
            table = _relation(schema, name)
            cur.execute(f"ALTER TABLE {staged[name]} RENAME TO {qi(name)}")
            constraints = {c["name"] for c in tables[name]["definition"]["constraints"]}
            for temp, final in renames[name]:
                if final in constraints:
                    cur.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {qi(temp)} TO {qi(final)}")
                else:
                    cur.execute(f"ALTER INDEX {_relation(schema, temp)} RENAME TO {qi(final)}")
            _grant(cur, table, tables[name]["grants"])
        for name in rebuilt:
            for constraint in tables[name]["definition"]["constraints"]:
                if constraint["type"] == "f":
                    cur.execute(
                        f"ALTER TABLE {_relation(schema, name)} ADD CONSTRAINT "
                        f"{qi(constraint['name'])} {constraint['definition']}"
                    )
        for seq in sequences:
            owner = seq["owned_by"]
            if owner and owner[0] in rebuilt:
                cur.execute(
                    f"ALTER SEQUENCE {_relation(schema, seq['name'])} "
                    f"OWNED BY {_relation(schema, owner[0])}.{qi(owner[1])}"
                )
        for name in rebuilt:
            _carry_identities(
                cur, schema, name, tables[name]["identities"], live.identities.get(name, {})
            )

    def recover(self, location: str) -> None:
        """Nothing to do: an interrupted restore is one transaction, which PostgreSQL undid."""

    def delete(self, snapshot: Snapshot) -> None:
        delete_folder(snapshot.location)


def _snapshot_checksum(entries: dict[str, Any]) -> str:
    return compose_checksum(
        {n: e["definition"] for n, e in entries.items()},
        {n: e["rows_sha256"] for n, e in entries.items()},
    )


def _tables_kept_in_place(live: Catalog, tables: dict[str, Any]) -> set[str]:
    """Tables whose definition is unchanged and that no foreign key ties to a table that
    will be replaced or dropped (those are replaced too, so no key points at a dropped row)."""
    kept = {n for n, e in tables.items() if live.definitions.get(n) == e["definition"]}
    while True:
        going = set(live.definitions) - kept
        tied = {
            end
            for table, _, _, referenced in live.foreign_keys
            for end in (table, referenced)
            if (table in going) != (referenced in going)
        }
        if not tied & kept:
            return kept
        kept -= tied


def _count(
    cur: Cursor,
    schema: str,
    live: Catalog,
    tables: dict[str, Any],
    staged: dict[str, str],
    keep: Sequence[str] = (),
) -> tuple[Changes, dict[str, int]]:
    """The changes since the snapshot, and the number of changed rows per snapshot table.
    For the tables in `keep`, the differing keys stay in `pg_temp.mlops_diff_<table index>`."""
    added = removed = modified = t_added = t_dropped = t_altered = 0
    changed: dict[str, int] = {}
    for name in live.definitions:
        if name not in tables:
            t_added += 1
            cur.execute(f"SELECT count(*) FROM {_relation(schema, name)}")
            added += int((cur.fetchone() or (0,))[0])
    for i, (name, entry) in enumerate(sorted(tables.items())):
        definition = entry["definition"]
        current = live.definitions.get(name)
        if current is None:
            t_dropped += 1
            removed += int(entry["rows"])
            changed[name] = int(entry["rows"])
            continue
        if current != definition:
            t_altered += 1
        key = _key(definition) if _key(current) == _key(definition) else None
        a, r, m = count_table(
            cur,
            _relation(schema, name),
            staged[name],
            _types(current),
            _types(definition),
            key,
            keep_as=_diff_relation(i) if name in keep else None,
        )
        added, removed, modified = added + a, removed + r, modified + m
        changed[name] = a + r + m
    return Changes("rows", added, removed, modified, t_added, t_dropped, t_altered), changed


def _diff_relation(i: int) -> str:
    return f"mlops_diff_{i}"


def _carry_identities(
    cur: Cursor,
    schema: str,
    table: str,
    snapshot: dict[str, dict[str, Any]],
    replaced: dict[str, dict[str, Any]],
) -> None:
    """Give a rebuilt table's identity sequences their snapshot names, and values that never
    go back (the larger of the snapshot's and the replaced table's)."""
    for column, identity in snapshot.items():
        cur.execute("SELECT pg_get_serial_sequence(%s, %s)", (_relation(schema, table), column))
        current = (cur.fetchone() or (None,))[0]
        if current is None:
            continue
        cur.execute(f"ALTER SEQUENCE {current} RENAME TO {qi(identity['sequence'])}")
        values = [v for v in (identity["value"], replaced.get(column, {}).get("value")) if v]
        if values:
            cur.execute(
                "SELECT setval(%s::regclass, %s)",
                (_relation(schema, identity["sequence"]), max(values)),
            )


def _create_missing_sequences(cur: Cursor, schema: str, sequences: list[dict[str, Any]]) -> None:
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'S'",
        (schema,),
    )
    present = {row[0] for row in cur}
    for seq in sequences:
        if seq["name"] in present:
            continue
        name = _relation(schema, seq["name"])
        cur.execute(
            f"CREATE SEQUENCE {name} AS {seq['type']} INCREMENT {int(seq['increment'])} "
            f"MINVALUE {int(seq['min'])} MAXVALUE {int(seq['max'])} START {int(seq['start'])} "
            f"CACHE {int(seq['cache'])} {'CYCLE' if seq['cycle'] else 'NO CYCLE'}"
        )
        if seq["value"] is not None:
            cur.execute("SELECT setval(%s::regclass, %s)", (name, seq["value"]))


def _advance_sequences(cur: Cursor, schema: str, sequences: list[dict[str, Any]]) -> None:
    """Sequences only move forward: an id issued since the snapshot is never issued again."""
    for seq in sequences:
        if seq["value"] is None:
            continue
        name = _relation(schema, seq["name"])
        cur.execute(
            "SELECT setval(%s::regclass, %s) "
            "WHERE coalesce(pg_sequence_last_value(%s::regclass), %s - 1) < %s",
            (name, seq["value"], name, seq["value"], seq["value"]),
        )


def _stage_rebuild(
    cur: Cursor, schema: str, temp_name: str, entry: dict[str, Any], folder: Path
) -> tuple[str, list[tuple[str, str]]]:
    """A new table in the schema with the snapshot's definition and rows, under a temporary
    name (invisible to others until COMMIT). Returns it, and the (temporary, final) names of
    its indexes and index-backed constraints; foreign keys are added after the swap."""
    definition = entry["definition"]
    relation = _relation(schema, temp_name)
    columns = ", ".join(column_sql(c) for c in definition["columns"])
    unlogged = "UNLOGGED " if definition["unlogged"] else ""
    cur.execute(f"CREATE {unlogged}TABLE {relation} ({columns})")
    copy_in(cur, relation, folder / entry["file"])
    renames: list[tuple[str, str]] = []
    for j, constraint in enumerate(definition["constraints"]):
        if constraint["type"] == "f":
            continue
        name = constraint["name"]
        if constraint["type"] in ("p", "u", "x"):
            name = f"{temp_name}_c{j}"
            renames.append((name, constraint["name"]))
        cur.execute(f"ALTER TABLE {relation} ADD CONSTRAINT {qi(name)} {constraint['definition']}")
    for j, index in enumerate(definition["indexes"]):
        name = f"{temp_name}_i{j}"
        renames.append((name, index["name"]))
        unique = "UNIQUE " if index["unique"] else ""
        cur.execute(f"CREATE {unique}INDEX {qi(name)} ON {relation} USING {index['using']}")
    cur.execute(f"ANALYZE {relation}")
    return relation, renames


def _put_rows_back(
    cur: Cursor,
    schema: str,
    names: list[str],
    tables: dict[str, Any],
    staged: dict[str, str],
    foreign_keys: list[tuple[str, str, str, str]],
) -> None:
    """Only the rows that differ (their keys are in the diff tables `_count` kept): deletes
    children first, then updates and inserts parents first. A table without a key is emptied
    and refilled."""
    order = _parents_first(names, foreign_keys)
    index = {name: i for i, name in enumerate(sorted(tables))}
    for name in reversed(order):
        key = _key(tables[name]["definition"])
        target = _relation(schema, name)
        if key:
            diff = _diff_relation(index[name])
            on = " AND ".join(f"l.{qi(k)} = d.k{j}" for j, k in enumerate(key))
            cur.execute(f"DELETE FROM {target} AS l USING {diff} AS d WHERE d.only_live AND {on}")
        else:
            cur.execute(f"DELETE FROM {target}")
    for name in order:
        definition = tables[name]["definition"]
        key = _key(definition)
        columns = _names(definition)
        target, source = _relation(schema, name), staged[name]
        listed = ", ".join(qi(c) for c in columns)
        picked = ", ".join(f"s.{qi(c)}" for c in columns)
        if not key:
            cur.execute(
                f"INSERT INTO {target} ({listed}) OVERRIDING SYSTEM VALUE "
                f"SELECT {picked} FROM {source} AS s"
            )
            continue
        diff = _diff_relation(index[name])
        s_on = " AND ".join(f"s.{qi(k)} = d.k{j}" for j, k in enumerate(key))
        l_on = " AND ".join(f"l.{qi(k)} = d.k{j}" for j, k in enumerate(key))
        values = [c for c in columns if c not in key]
        if values:
            sets = ", ".join(f"{qi(c)} = s.{qi(c)}" for c in values)
            cur.execute(
                f"UPDATE {target} AS l SET {sets} FROM {source} AS s, {diff} AS d "
                f"WHERE NOT d.only_live AND NOT d.only_snap AND {s_on} AND {l_on}"
            )
        cur.execute(
            f"INSERT INTO {target} ({listed}) OVERRIDING SYSTEM VALUE SELECT {picked} "
            f"FROM {source} AS s JOIN {diff} AS d ON {s_on} WHERE d.only_snap"
        )


def _grant(cur: Cursor, table: str, grants: dict[str, Any]) -> None:
    """The snapshot's owner and privileges on a table created by the restore."""
    owner = grants.get("owner")
    cur.execute("SELECT current_user")
    if owner and (cur.fetchone() or ("",))[0] != owner:
        cur.execute(f"ALTER TABLE {table} OWNER TO {qi(owner)}")
    for grantee, privilege, grantable in grants.get("acl", []):
        option = " WITH GRANT OPTION" if grantable else ""
        cur.execute(f"GRANT {privilege} ON {table} TO {grantee}{option}")


def _parents_first(tables: list[str], foreign_keys: list[tuple[str, str, str, str]]) -> list[str]:
    wanted = set(tables)
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for table, _, _, referenced in foreign_keys:
        if table in wanted and referenced in wanted and referenced != table:
            parents[table].add(referenced)
    order: list[str] = []

    def visit(table: str, path: frozenset[str]) -> None:
        if table in order or table in path:
            return
        for parent in sorted(parents[table]):
            visit(parent, path | {table})
        order.append(table)

    for table in sorted(tables):
        visit(table, frozenset())
    return order
