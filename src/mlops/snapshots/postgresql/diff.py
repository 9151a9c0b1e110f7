"""What changed: the live tables against a snapshot's rows staged beside them, counted row by
row (paired by primary key, or as multisets of rows for a table without one).

A value counts as changed when its text output would differ; where a type's `=` is exact,
values are compared natively, which costs about a quarter of comparing their text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from mlops.snapshots.driver import Changes
from mlops.snapshots.postgresql.catalog import Catalog, column_types, key_of
from mlops.snapshots.postgresql.session import Cursor, relation

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
COLLATE_C = sql.SQL("COLLATE {}").format(sql.Identifier("C"))


def diff_relation(i: int) -> sql.Identifier:
    """The temporary table that keeps the differing keys of the snapshot's `i`th table."""
    return sql.Identifier(f"mlops_diff_{i}")


def column_differs(a: str, b: str, name: str, type_a: str, type_b: str) -> sql.Composed:
    """SQL: the column's values in rows `a` and `b` differ as data (as their text output
    would), compared natively where that is exact, since text output costs ~4x more."""
    x, y = sql.Identifier(a, name), sql.Identifier(b, name)
    if type_a != type_b:
        template = "{x}::text IS DISTINCT FROM {y}::text"
    elif type_a in EXACT_EQUALITY:
        template = "{x} IS DISTINCT FROM {y}"
    elif TEXT_TYPE.fullmatch(type_a):
        template = "{x} {c} IS DISTINCT FROM {y} {c}"
    elif type_a in ("double precision", "real"):
        template = "({x} IS DISTINCT FROM {y} OR ({x} = 0 AND {x}::text <> {y}::text))"
    else:
        template = "{x}::text IS DISTINCT FROM {y}::text"
    return sql.SQL(template).format(x=x, y=y, c=COLLATE_C)


def count_table(
    cur: Cursor,
    live: sql.Composable,
    staged: sql.Composable,
    live_columns: dict[str, str],
    snap_columns: dict[str, str],
    key: Sequence[str] | None,
    keep_as: sql.Identifier | None = None,
) -> tuple[int, int, int]:
    """(added, removed, modified) rows of `live` against `staged`, on their shared columns
    (name -> type).

    With a key and `keep_as`, the differing keys are also kept in that temporary table
    (`only_live`, `only_snap`, `k0`, `k1`, ...), so that putting rows back reads them
    instead of comparing every row again.
    """
    shared = [c for c in snap_columns if c in live_columns]
    if not key:
        return (*_count_unkeyed(cur, live, staged, shared), 0)
    differs = sql.SQL(" OR ").join(
        column_differs("l", "s", c, live_columns[c], snap_columns[c]) for c in shared
    )
    first_l, first_s = sql.Identifier("l", key[0]), sql.Identifier("s", key[0])
    flags = sql.SQL("{} IS NULL AS only_live, {} IS NULL AS only_snap").format(first_s, first_l)
    differing = sql.SQL(
        "FROM {live} AS l FULL JOIN {staged} AS s ON {on} "
        "WHERE {first_l} IS NULL OR {first_s} IS NULL OR {differs}"
    ).format(
        live=live,
        staged=staged,
        on=key_match("l", "s", key),
        first_l=first_l,
        first_s=first_s,
        differs=differs if shared else sql.SQL("false"),
    )
    if keep_as is None:
        source: sql.Composable = sql.SQL("(SELECT {} {}) AS d").format(flags, differing)
    else:
        keys = sql.SQL(", ").join(
            sql.SQL("CASE WHEN {} IS NULL THEN {} ELSE {} END AS {}").format(
                first_l, sql.Identifier("s", k), sql.Identifier("l", k), sql.Identifier(f"k{j}")
            )
            for j, k in enumerate(key)
        )
        cur.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {}, {} {}").format(
                keep_as, flags, keys, differing
            )
        )
        source = keep_as
    cur.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE only_live), count(*) FILTER (WHERE only_snap), "
            "count(*) FILTER (WHERE NOT only_live AND NOT only_snap) FROM {}"
        ).format(source)
    )
    added, removed, modified = cur.fetchone() or (0, 0, 0)
    return int(added), int(removed), int(modified)


def _count_unkeyed(
    cur: Cursor, live: sql.Composable, staged: sql.Composable, shared: list[str]
) -> tuple[int, int]:
    """(added, removed) rows of a table without a key: its rows compared as multisets."""

    def row(alias: str) -> sql.Composable:
        if not shared:
            return sql.SQL("''")
        columns = sql.SQL(", ").join(sql.Identifier(alias, c) for c in shared)
        return sql.SQL("ROW({})::text").format(columns)

    counted = []
    for (a, table_a), (b, table_b) in (
        ((("l", live), ("s", staged))),
        (("s", staged), ("l", live)),
    ):
        cur.execute(
            sql.SQL(
                "SELECT count(*) FROM (SELECT {} FROM {} AS {} "
                "EXCEPT ALL SELECT {} FROM {} AS {}) AS x"
            ).format(row(a), table_a, sql.Identifier(a), row(b), table_b, sql.Identifier(b))
        )
        counted.append(int((cur.fetchone() or (0,))[0]))
    return counted[0], counted[1]


def key_match(a: str, b: str, key: Sequence[str], b_columns: Sequence[str] = ()) -> sql.Composed:
    """SQL: rows `a` and `b` have the same key; `b`'s key columns are named `b_columns`
    (the diff tables' `k0`, `k1`, ...) when given, else as `a`'s."""
    names = b_columns or key
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(a, k), sql.Identifier(b, n))
        for k, n in zip(key, names, strict=True)
    )


def diff_keys(a: str, key: Sequence[str]) -> sql.Composed:
    """SQL: row `a` has the key kept in the diff table row `d` (`d.k0`, `d.k1`, ...)."""
    return key_match(a, "d", key, [f"k{j}" for j in range(len(key))])


def count_changes(
    cur: Cursor,
    schema: str,
    live: Catalog,
    tables: dict[str, Any],
    staged: dict[str, sql.Identifier],
    keep: Sequence[str] = (),
) -> tuple[Changes, dict[str, int]]:
    """The changes since the snapshot, and the number of changed rows per snapshot table.
    For the tables in `keep`, the differing keys stay in `pg_temp.mlops_diff_<table index>`."""
    added = removed = modified = t_added = t_dropped = t_altered = 0
    changed: dict[str, int] = {}
    for name in live.definitions:
        if name not in tables:
            t_added += 1
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(relation(schema, name)))
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
        key = key_of(definition) if key_of(current) == key_of(definition) else None
        a, r, m = count_table(
            cur,
            relation(schema, name),
            staged[name],
            column_types(current),
            column_types(definition),
            key,
            keep_as=diff_relation(i) if name in keep else None,
        )
        added, removed, modified = added + a, removed + r, modified + m
        changed[name] = a + r + m
    return Changes("rows", added, removed, modified, t_added, t_dropped, t_altered), changed
