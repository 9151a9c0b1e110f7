"""The SQLite driver's one quoting function, and the SQL it writes with it."""

from mlops.snapshots.sqlite import Table, column, ident, same_row


def test_identifiers_are_double_quoted_and_qualified() -> None:
    assert ident("main", 'we"ird') == '"main"."we""ird"'
    assert column("a", "x y") == '"a"."x y"'
    assert column("a", "rowid") == '"a".rowid'


def test_keys_and_rows_are_compared_through_the_quoting() -> None:
    keyed = Table("t", "CREATE TABLE t (id, v)", ("id",), ("id", "v"))
    by_rowid = Table("u", "CREATE TABLE u (v)", ("rowid",), ("v",), frozenset({"v"}))
    assert keyed.key_match("a", "b") == '"a"."id" = "b"."id"'
    assert by_rowid.key_order("t") == '"t".rowid'
    assert keyed.copied == ["id", "v"]
    assert by_rowid.copied == ["rowid", "v"]
    assert same_row("a", "b", ["v"], frozenset({"v"})) == (
        '("a"."v" IS "b"."v" COLLATE BINARY AND typeof("a"."v") = typeof("b"."v"))'
    )
    assert same_row("a", "b", [], frozenset()) == "1"
