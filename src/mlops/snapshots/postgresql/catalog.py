"""What the driver knows of a schema: its tables' definitions (columns, constraints, indexes,
primary key), grants, sequences and identities, read from the system catalog, and the
checksum that composes the definitions with the tables' row hashes.

A definition is plain data (it goes into `snapshot.json` and the checksum); the SQL fragments
in it (types, defaults, constraint and index definitions, collations, grantees) are the
server's own text, already quoted by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from mlops.errors import UnsupportedResource
from mlops.snapshots.driver import canonical_sha256
from mlops.snapshots.postgresql.session import Cursor

TABLES = """
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
"""

COLUMNS = """
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
"""

CONSTRAINTS = """
    SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), r.relname
    FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_class r ON r.oid = k.confrelid
    WHERE n.nspname = %s AND c.relkind = 'r'
    ORDER BY c.relname, k.conname
"""

INDEXES = """
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
"""

KEYS = """
    SELECT c.relname, array_agg(a.attname ORDER BY k.ord)
    FROM pg_index i
    JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE n.nspname = %s AND i.indisprimary
    GROUP BY c.relname
"""

OWNED_SEQUENCES = """
    SELECT t.relname, s.relname
    FROM pg_class s
    JOIN pg_namespace n ON n.oid = s.relnamespace
    JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
    JOIN pg_class t ON t.oid = d.refobjid
    WHERE n.nspname = %s AND s.relkind = 'S'
    ORDER BY t.relname, s.relname
"""

SEQUENCES = """
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
"""


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
    catalog = Catalog()
    problems = _read_tables(cur, schema, catalog)
    if problems and strict:
        raise UnsupportedResource(
            f"schema {schema!r} holds what the postgresql snapshot driver cannot restore: "
            + "; ".join(problems)
        )
    if not catalog.definitions:
        return catalog
    _read_columns(cur, schema, catalog)
    _read_constraints(cur, schema, catalog)
    _read_indexes(cur, schema, catalog)
    _read_keys(cur, schema, catalog)
    cur.execute(OWNED_SEQUENCES, (schema,))
    for table, sequence in cur:
        catalog.owned_sequences.setdefault(table, []).append(sequence)
    return catalog


def _read_tables(cur: Cursor, schema: str, catalog: Catalog) -> list[str]:
    """Fill in the tables, their grants and what is unsupported in them; returns the latter."""
    cur.execute(TABLES, (schema,))
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
    return problems


def _read_columns(cur: Cursor, schema: str, catalog: Catalog) -> None:
    cur.execute(COLUMNS, (schema,))
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


def _read_constraints(cur: Cursor, schema: str, catalog: Catalog) -> None:
    cur.execute(CONSTRAINTS, (schema,))
    for table, name, kind, definition, referenced in cur:
        if table not in catalog.definitions:
            continue
        catalog.definitions[table]["constraints"].append(
            {"name": name, "type": kind, "definition": definition}
        )
        if kind == "f":
            catalog.foreign_keys.append((table, name, definition, referenced))


def _read_indexes(cur: Cursor, schema: str, catalog: Catalog) -> None:
    """Indexes that no constraint owns, each as its method and what follows (`USING ...`)."""
    cur.execute(INDEXES, (schema,))
    for table, name, unique, definition, method in cur:
        if table not in catalog.definitions:
            continue
        marker = f" USING {method} "
        using = definition[definition.index(marker) + len(" USING ") :]
        catalog.definitions[table]["indexes"].append(
            {"name": name, "unique": unique, "using": using}
        )


def _read_keys(cur: Cursor, schema: str, catalog: Catalog) -> None:
    cur.execute(KEYS, (schema,))
    for table, columns in cur:
        if table in catalog.definitions:
            catalog.definitions[table]["key"] = list(columns)


def read_sequences(cur: Cursor, schema: str) -> list[dict[str, Any]]:
    """The schema's sequences that no identity column owns, with their settings and value."""
    cur.execute(SEQUENCES, (schema,))
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


def compose_checksum(definitions: dict[str, Any], row_hashes: dict[str, str]) -> str:
    return canonical_sha256(
        {
            "tables": {
                name: {"definition": definitions[name], "rows_sha256": row_hashes[name]}
                for name in sorted(definitions)
            }
        }
    )


def snapshot_checksum(entries: dict[str, Any]) -> str:
    """The checksum of a snapshot's tables (as `snapshot.json` lists them)."""
    return compose_checksum(
        {n: e["definition"] for n, e in entries.items()},
        {n: e["rows_sha256"] for n, e in entries.items()},
    )


def column_sql(column: dict[str, Any]) -> sql.Composed:
    """The column as it is declared in CREATE TABLE."""
    parts: list[sql.Composable] = [sql.Identifier(column["name"]), sql.SQL(column["type"])]
    if column["collation"]:
        parts.append(sql.SQL("COLLATE " + column["collation"]))
    if column["identity"] == "a":
        parts.append(sql.SQL("GENERATED ALWAYS AS IDENTITY"))
    elif column["identity"] == "d":
        parts.append(sql.SQL("GENERATED BY DEFAULT AS IDENTITY"))
    elif column["default"] is not None:
        parts.append(sql.SQL("DEFAULT " + column["default"]))
    if column["not_null"]:
        parts.append(sql.SQL("NOT NULL"))
    return sql.SQL(" ").join(parts)


def column_names(definition: dict[str, Any]) -> list[str]:
    return [c["name"] for c in definition["columns"]]


def column_types(definition: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in definition["columns"]}


def key_of(definition: dict[str, Any]) -> list[str]:
    """The primary-key columns, in key order (empty for a table without one)."""
    return list(definition["key"])
