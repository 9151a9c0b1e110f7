"""Sequences on restore: created when missing, and only ever moved forward, so that an id
issued since the snapshot is never issued again."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from mlops.snapshots.postgresql.session import Cursor, regclass_text, relation

SETVAL = "SELECT setval(%s::regclass, %s)"


def create_missing_sequences(cur: Cursor, schema: str, sequences: list[dict[str, Any]]) -> None:
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'S'",
        (schema,),
    )
    present = {row[0] for row in cur}
    for seq in sequences:
        if seq["name"] in present:
            continue
        cur.execute(
            sql.SQL(
                "CREATE SEQUENCE {} AS {} INCREMENT {} MINVALUE {} MAXVALUE {} START {} CACHE {} {}"
            ).format(
                relation(schema, seq["name"]),
                sql.SQL(seq["type"]),
                *(sql.SQL(str(int(seq[k]))) for k in ("increment", "min", "max", "start", "cache")),
                sql.SQL("CYCLE" if seq["cycle"] else "NO CYCLE"),
            )
        )
        if seq["value"] is not None:
            cur.execute(SETVAL, (regclass_text(cur, schema, seq["name"]), seq["value"]))


def advance_sequences(cur: Cursor, schema: str, sequences: list[dict[str, Any]]) -> None:
    """Set each sequence to the snapshot's value where it is behind it."""
    for seq in sequences:
        if seq["value"] is None:
            continue
        name = regclass_text(cur, schema, seq["name"])
        cur.execute(
            "SELECT setval(%s::regclass, %s) "
            "WHERE coalesce(pg_sequence_last_value(%s::regclass), %s - 1) < %s",
            (name, seq["value"], name, seq["value"], seq["value"]),
        )


def carry_identities(
    cur: Cursor,
    schema: str,
    table: str,
    snapshot: dict[str, dict[str, Any]],
    replaced: dict[str, dict[str, Any]],
) -> None:
    """Give a rebuilt table's identity sequences their snapshot names, and values that never
    go back (the larger of the snapshot's and the replaced table's)."""
    for column, identity in snapshot.items():
        cur.execute(
            "SELECT s.relname FROM pg_class s "
            "WHERE s.oid = pg_get_serial_sequence(%s, %s)::regclass",
            (regclass_text(cur, schema, table), column),
        )
        current = cur.fetchone()
        if current is None:
            continue
        cur.execute(
            sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
                relation(schema, current[0]), sql.Identifier(identity["sequence"])
            )
        )
        values = [v for v in (identity["value"], replaced.get(column, {}).get("value")) if v]
        if values:
            cur.execute(SETVAL, (regclass_text(cur, schema, identity["sequence"]), max(values)))
