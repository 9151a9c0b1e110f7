"""The PostgreSQL driver's decisions that need no database: which tables a restore keeps in
place, the order rows go back in, how values are compared, and how names are quoted."""

from typing import Any

import pytest
from psycopg import sql

from mlops.errors import UnsupportedResource
from mlops.snapshots.postgresql import Catalog, split_location
from mlops.snapshots.postgresql.catalog import column_sql, snapshot_checksum
from mlops.snapshots.postgresql.copy import order_by
from mlops.snapshots.postgresql.diff import column_differs, diff_keys, key_match
from mlops.snapshots.postgresql.restore import parents_first, tables_kept_in_place


def text(query: sql.Composable) -> str:
    return query.as_string(None)


def definition(*columns: str, key: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    return {
        "unlogged": False,
        "columns": [
            {
                "name": c,
                "type": "integer",
                "not_null": False,
                "default": None,
                "collation": None,
                "identity": None,
            }
            for c in columns
        ],
        "constraints": [],
        "indexes": [],
        "key": list(key),
    }


def entry(d: dict[str, Any]) -> dict[str, Any]:
    return {"definition": d, "rows_sha256": "0" * 64}


def test_tables_with_an_unchanged_definition_are_kept_in_place() -> None:
    live = Catalog(definitions={"a": definition("id"), "b": definition("id", "x")})
    tables = {"a": entry(definition("id")), "b": entry(definition("id"))}
    assert tables_kept_in_place(live, tables) == {"a"}


def test_a_table_tied_by_a_foreign_key_to_a_replaced_one_is_replaced_too() -> None:
    live = Catalog(
        definitions={
            "parent": definition("id", "x"),
            "child": definition("id"),
            "other": definition("id"),
        },
        foreign_keys=[("child", "child_fk", "FOREIGN KEY ...", "parent")],
    )
    tables = {n: entry(definition("id")) for n in ("parent", "child", "other")}
    assert tables_kept_in_place(live, tables) == {"other"}


def test_a_table_the_release_added_is_not_kept_and_unties_nothing() -> None:
    live = Catalog(definitions={"a": definition("id"), "new": definition("id")})
    assert tables_kept_in_place(live, {"a": entry(definition("id"))}) == {"a"}


def test_parents_come_before_children_and_cycles_end() -> None:
    keys = [
        ("c", "fk1", "", "b"),
        ("b", "fk2", "", "a"),
        ("x", "fk3", "", "y"),
        ("y", "fk4", "", "x"),
        ("a", "self", "", "a"),
    ]
    order = parents_first(["c", "b", "a", "x", "y"], keys)
    assert order.index("a") < order.index("b") < order.index("c")
    assert sorted(order) == ["a", "b", "c", "x", "y"]
    assert parents_first(["c"], keys) == ["c"]


def test_values_are_compared_natively_where_that_is_exact() -> None:
    assert text(column_differs("l", "s", "n", "integer", "integer")) == (
        '"l"."n" IS DISTINCT FROM "s"."n"'
    )
    assert text(column_differs("l", "s", "n", "text", "text")) == (
        '"l"."n" COLLATE "C" IS DISTINCT FROM "s"."n" COLLATE "C"'
    )
    assert text(column_differs("l", "s", "n", "integer", "bigint")) == (
        '"l"."n"::text IS DISTINCT FROM "s"."n"::text'
    )
    assert "::text <>" in text(column_differs("l", "s", "n", "real", "real"))
    assert text(column_differs("l", "s", "n", "numeric", "numeric")).endswith('"s"."n"::text')


def test_names_are_quoted_by_psycopg_wherever_they_go() -> None:
    odd = 'we"ird name'
    assert text(key_match("l", "s", [odd, "b"])) == (
        '"l"."we""ird name" = "s"."we""ird name" AND "l"."b" = "s"."b"'
    )
    assert text(diff_keys("l", ["a", "b"])) == '"l"."a" = "d"."k0" AND "l"."b" = "d"."k1"'
    assert text(order_by("t", [odd])) == '"t"."we""ird name"'
    assert text(order_by("t", [])) == '("t".*)::text COLLATE "C"'
    column = {
        "name": odd,
        "type": "text",
        "not_null": True,
        "default": "'x'::text",
        "collation": '"pg_catalog"."C"',
        "identity": "",
    }
    assert text(column_sql(column)) == (
        '"we""ird name" text COLLATE "pg_catalog"."C" DEFAULT \'x\'::text NOT NULL'
    )
    assert text(column_sql({**column, "identity": "a"})).endswith(
        "GENERATED ALWAYS AS IDENTITY NOT NULL"
    )


def test_the_checksum_depends_on_definitions_and_rows() -> None:
    one = {"a": entry(definition("id"))}
    assert snapshot_checksum(one) == snapshot_checksum({"a": entry(definition("id"))})
    assert snapshot_checksum(one) != snapshot_checksum({"a": entry(definition("id", "x"))})
    assert snapshot_checksum(one) != snapshot_checksum(
        {"a": {**entry(definition("id")), "rows_sha256": "1" * 64}}
    )


def test_the_schema_comes_from_the_argument_the_url_or_public() -> None:
    url = "postgresql+psycopg://u@h:5432/db?schema=feat&sslmode=disable"
    assert split_location(url) == ("postgresql://u@h:5432/db?sslmode=disable", "feat")
    assert split_location(url, "other")[1] == "other"
    assert split_location("postgres://h/db") == ("postgres://h/db", "public")
    with pytest.raises(UnsupportedResource):
        split_location("mysql://h/db")
