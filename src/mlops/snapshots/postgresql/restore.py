"""Putting a snapshot back, inside the caller's transaction (see docs/snapshots.md).

Tables whose definition is unchanged are restored in place: their snapshot rows are staged
in temporary tables, the live tables are locked EXCLUSIVE (readers go on), and only the rows
that differ are deleted, updated or inserted. The others are rebuilt under temporary names
in the schema and swapped in (DROP, RENAME) under ACCESS EXCLUSIVE locks held only for that
last step. Rows, then definitions, are verified against the snapshot before the caller
commits; anything raised undoes it all.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from psycopg import errors as pg_errors
from psycopg import sql

from mlops.errors import RestoreFailed
from mlops.snapshots.driver import Changes, Snapshot
from mlops.snapshots.postgresql.catalog import (
    Catalog,
    column_names,
    column_sql,
    compose_checksum,
    key_of,
    read_catalog,
)
from mlops.snapshots.postgresql.copy import copy_in, copy_out, stage_temp
from mlops.snapshots.postgresql.diff import count_changes, diff_keys, diff_relation
from mlops.snapshots.postgresql.sequences import (
    advance_sequences,
    carry_identities,
    create_missing_sequences,
)
from mlops.snapshots.postgresql.session import Cursor, Locks, relation


@dataclass(frozen=True)
class Plan:
    """What a restore does to each table, and where the snapshot's rows are staged."""

    schema: str
    live: Catalog
    tables: dict[str, Any]
    """The snapshot's tables, as `snapshot.json` lists them."""
    sequences: list[dict[str, Any]]
    in_place: frozenset[str]
    staged: dict[str, sql.Identifier] = field(default_factory=dict)
    renames: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Rebuilt table -> (temporary, final) names of its indexes and index-backed constraints."""

    @property
    def rebuilt(self) -> list[str]:
        return sorted(n for n in self.tables if n not in self.in_place)

    @property
    def dropped(self) -> list[str]:
        return sorted(n for n in self.live.definitions if n not in self.tables)


def restore_schema(
    cur: Cursor, schema: str, snapshot: Snapshot, meta: dict[str, Any], locks: Locks
) -> Changes:
    """Make the schema hold the snapshot; returns the changes it discarded. The caller
    commits, or rolls back on any error."""
    live = read_catalog(cur, schema)
    tables: dict[str, Any] = meta["tables"]
    in_place = frozenset(tables_kept_in_place(live, tables))
    plan = Plan(schema, live, tables, meta.get("sequences", []), in_place)
    create_missing_sequences(cur, schema, plan.sequences)
    staged, renames = _stage(cur, plan, Path(snapshot.location))
    plan = replace(plan, staged=staged, renames=renames)
    locks.take(cur, schema, list(live.definitions), "EXCLUSIVE")
    changes, changed = count_changes(
        cur, schema, live, tables, plan.staged, keep=sorted(plan.in_place)
    )
    put_rows_back(cur, plan, [n for n in plan.in_place if changed[n]])
    _verify_rows(cur, plan, snapshot)
    if plan.rebuilt or plan.dropped:
        _swap(cur, plan, locks)
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
    advance_sequences(cur, schema, plan.sequences)
    return changes


def tables_kept_in_place(live: Catalog, tables: dict[str, Any]) -> set[str]:
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


def _stage(
    cur: Cursor, plan: Plan, folder: Path
) -> tuple[dict[str, sql.Identifier], dict[str, list[tuple[str, str]]]]:
    """The snapshot's rows of every table staged (temporary tables for the tables kept in
    place, rebuilt tables under temporary names for the others), and the rebuilt tables'
    renames."""
    token = secrets.token_hex(4)
    staged: dict[str, sql.Identifier] = {}
    renames: dict[str, list[tuple[str, str]]] = {}
    for i, name in enumerate(sorted(plan.tables)):
        if name in plan.in_place:
            staged[name] = stage_temp(cur, i, plan.tables[name], folder)
        else:
            staged[name], renames[name] = stage_rebuild(
                cur, plan.schema, f"mlops_restore_{token}_{i}", plan.tables[name], folder
            )
    return staged, renames


def _verify_rows(cur: Cursor, plan: Plan, snapshot: Snapshot) -> None:
    for name in sorted(plan.tables):
        table = relation(plan.schema, name) if name in plan.in_place else plan.staged[name]
        entry = plan.tables[name]
        if copy_out(cur, table, key_of(entry["definition"]))[0] != entry["rows_sha256"]:
            raise RestoreFailed(
                f"restore of {snapshot.resource!r} did not verify: the rows of table "
                f"{name!r} differ from the snapshot's; it was undone"
            )


def stage_rebuild(
    cur: Cursor, schema: str, temp_name: str, entry: dict[str, Any], folder: Path
) -> tuple[sql.Identifier, list[tuple[str, str]]]:
    """A new table in the schema with the snapshot's definition and rows, under a temporary
    name (invisible to others until COMMIT). Returns it, and the (temporary, final) names of
    its indexes and index-backed constraints; foreign keys are added after the swap."""
    definition = entry["definition"]
    table = relation(schema, temp_name)
    cur.execute(
        sql.SQL("CREATE {}TABLE {} ({})").format(
            sql.SQL("UNLOGGED " if definition["unlogged"] else ""),
            table,
            sql.SQL(", ").join(column_sql(c) for c in definition["columns"]),
        )
    )
    copy_in(cur, table, folder / entry["file"])
    renames: list[tuple[str, str]] = []
    for j, constraint in enumerate(definition["constraints"]):
        if constraint["type"] == "f":
            continue
        name = constraint["name"]
        if constraint["type"] in ("p", "u", "x"):
            name = f"{temp_name}_c{j}"
            renames.append((name, constraint["name"]))
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                table, sql.Identifier(name), sql.SQL(constraint["definition"])
            )
        )
    for j, index in enumerate(definition["indexes"]):
        name = f"{temp_name}_i{j}"
        renames.append((name, index["name"]))
        cur.execute(
            sql.SQL("CREATE {}INDEX {} ON {} USING {}").format(
                sql.SQL("UNIQUE " if index["unique"] else ""),
                sql.Identifier(name),
                table,
                sql.SQL(index["using"]),
            )
        )
    cur.execute(sql.SQL("ANALYZE {}").format(table))
    return table, renames


def put_rows_back(cur: Cursor, plan: Plan, names: list[str]) -> None:
    """Only the rows that differ (their keys are in the diff tables `count_changes` kept):
    deletes children first, then updates and inserts parents first. A table without a key is
    emptied and refilled."""
    order = parents_first(names, plan.live.foreign_keys)
    index = {name: i for i, name in enumerate(sorted(plan.tables))}
    for name in reversed(order):
        key = key_of(plan.tables[name]["definition"])
        target = relation(plan.schema, name)
        if key:
            cur.execute(
                sql.SQL("DELETE FROM {} AS l USING {} AS d WHERE d.only_live AND {}").format(
                    target, diff_relation(index[name]), diff_keys("l", key)
                )
            )
        else:
            cur.execute(sql.SQL("DELETE FROM {}").format(target))
    for name in order:
        _put_table_back(cur, plan, name, diff_relation(index[name]))


def _put_table_back(cur: Cursor, plan: Plan, name: str, diff: sql.Identifier) -> None:
    """Update and insert the rows of one table whose differing rows were deleted."""
    definition = plan.tables[name]["definition"]
    key = key_of(definition)
    columns = column_names(definition)
    target, source = relation(plan.schema, name), plan.staged[name]
    listed = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    picked = sql.SQL(", ").join(sql.Identifier("s", c) for c in columns)
    if not key:
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} AS s").format(
                target, listed, picked, source
            )
        )
        return
    values = [c for c in columns if c not in key]
    if values:
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in values
        )
        cur.execute(
            sql.SQL(
                "UPDATE {} AS l SET {} FROM {} AS s, {} AS d "
                "WHERE NOT d.only_live AND NOT d.only_snap AND {} AND {}"
            ).format(target, sets, source, diff, diff_keys("s", key), diff_keys("l", key))
        )
    cur.execute(
        sql.SQL(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} "
            "FROM {} AS s JOIN {} AS d ON {} WHERE d.only_snap"
        ).format(target, listed, picked, source, diff, diff_keys("s", key))
    )


def _swap(cur: Cursor, plan: Plan, locks: Locks) -> None:
    """Replace the rebuilt tables and drop the added ones, under ACCESS EXCLUSIVE locks."""
    schema, live = plan.schema, plan.live
    going = sorted({*plan.dropped, *(n for n in plan.rebuilt if n in live.definitions)})
    locks.take(cur, schema, going, "ACCESS EXCLUSIVE")
    kept = {s["name"] for s in plan.sequences}
    for table in going:
        for sequence in live.owned_sequences.get(table, []):
            if sequence in kept:
                cur.execute(
                    sql.SQL("ALTER SEQUENCE {} OWNED BY NONE").format(relation(schema, sequence))
                )
    for table in going:
        _drop(cur, schema, table)
    for name in plan.rebuilt:
        _rename_into_place(cur, plan, name)
    for name in plan.rebuilt:
        for constraint in plan.tables[name]["definition"]["constraints"]:
            if constraint["type"] == "f":
                cur.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                        relation(schema, name),
                        sql.Identifier(constraint["name"]),
                        sql.SQL(constraint["definition"]),
                    )
                )
    for seq in plan.sequences:
        owner = seq["owned_by"]
        if owner and owner[0] in plan.rebuilt:
            cur.execute(
                sql.SQL("ALTER SEQUENCE {} OWNED BY {}").format(
                    relation(schema, seq["name"]), sql.Identifier(schema, owner[0], owner[1])
                )
            )
    for name in plan.rebuilt:
        carry_identities(
            cur, schema, name, plan.tables[name]["identities"], live.identities.get(name, {})
        )


def _drop(cur: Cursor, schema: str, table: str) -> None:
    cur.execute("SAVEPOINT mlops_drop")
    try:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(relation(schema, table)))
    except pg_errors.DependentObjectsStillExist as exc:
        raise RestoreFailed(
            f"cannot replace table {table!r}: other objects depend on it "
            f"({str(exc).strip()}); nothing was changed"
        ) from None
    cur.execute("RELEASE SAVEPOINT mlops_drop")


def _rename_into_place(cur: Cursor, plan: Plan, name: str) -> None:
    """Give a rebuilt table, its index-backed constraints and indexes their final names."""
    table = relation(plan.schema, name)
    cur.execute(
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(plan.staged[name], sql.Identifier(name))
    )
    constraints = {c["name"] for c in plan.tables[name]["definition"]["constraints"]}
    for temp, final in plan.renames[name]:
        if final in constraints:
            statement = sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                table, sql.Identifier(temp), sql.Identifier(final)
            )
        else:
            statement = sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                relation(plan.schema, temp), sql.Identifier(final)
            )
        cur.execute(statement)
    _grant(cur, table, plan.tables[name]["grants"])


def _grant(cur: Cursor, table: sql.Identifier, grants: dict[str, Any]) -> None:
    """The snapshot's owner and privileges on a table created by the restore. Grantees are
    as the catalog quoted them (`PUBLIC` or a role name)."""
    owner = grants.get("owner")
    cur.execute("SELECT current_user")
    if owner and (cur.fetchone() or ("",))[0] != owner:
        cur.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(table, sql.Identifier(owner)))
    for grantee, privilege, grantable in grants.get("acl", []):
        cur.execute(
            sql.SQL("GRANT {} ON {} TO {}{}").format(
                sql.SQL(privilege),
                table,
                sql.SQL(grantee),
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )


def parents_first(tables: list[str], foreign_keys: list[tuple[str, str, str, str]]) -> list[str]:
    """The tables ordered so that a table referenced by a foreign key comes before those
    that reference it (cycles are broken by name)."""
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
