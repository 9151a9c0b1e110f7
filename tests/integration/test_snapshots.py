"""Data snapshots on real resources: SQLite files, a schema of the local PostgreSQL, folders.

Each resource kind is built with a feature table (`features`: key -> value `a`) and a few
other shapes (a keyless table, a table without rowid, a serial id with a foreign key, nested
folders), snapshotted, then changed as a release's migration would (rows updated, inserted,
deleted; a column and a table added; files added, modified, removed). The tests check that
`changes_since` counts those writes exactly, that a restore gives back the original data
exactly and verified, that a restore killed with SIGKILL at random moments leaves the old or
the restored data and never a mix, that readers of the feature table are answered all
through a restore, and that a changed or missing snapshot is refused with nothing changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mlops.errors import RestoreFailed, SnapshotCorrupt, SnapshotMissing, UnsupportedResource
from mlops.snapshots import (
    Changes,
    DirectorySnapshot,
    PostgresSnapshot,
    Snapshot,
    SnapshotDriver,
    SqliteSnapshot,
)
from mlops.snapshots.postgresql import split_location
from tests.server import REPO

SEED = 20261124
KINDS = ["sqlite", "postgresql", "directory"]
CHANGED_KEYS = list(range(10))
"""Keys whose value `a` the change adds 1 to (files: whose text it changes)."""
STEADY_KEYS = list(range(100, 110))


# -- resources ------------------------------------------------------------------------------


class Resource:
    """A data resource of one kind, its driver, and the change a release makes to it."""

    driver: SnapshotDriver
    location: str
    expected: Changes
    """What `changes_since` must count after `change()`."""

    def build(self, rows: int) -> None:
        raise NotImplementedError

    def change(self, *, alter_features: bool = False) -> None:
        raise NotImplementedError

    def content(self) -> Any:
        """Everything the resource holds, to compare exactly."""
        raise NotImplementedError

    def value(self, key: int) -> Any:
        raise NotImplementedError

    def corrupt(self, snapshot: Snapshot) -> None:
        raise NotImplementedError

    def lose_data(self, snapshot: Snapshot) -> None:
        raise NotImplementedError


class SqliteResource(Resource):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self.driver = SqliteSnapshot(busy_timeout_s=5)
        self.expected = Changes(
            "rows", added=6, removed=5, modified=12, tables_added=1, tables_altered=1
        )

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, timeout=30)

    def build(self, rows: int) -> None:
        with contextlib.closing(self.connect()) as db:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(
                """
                CREATE TABLE features (key INTEGER PRIMARY KEY, a REAL NOT NULL, b TEXT);
                CREATE INDEX ix_features_b ON features (b);
                CREATE TABLE lookup (code TEXT PRIMARY KEY, label TEXT) WITHOUT ROWID;
                CREATE TABLE notes (msg TEXT);
                CREATE VIEW big AS SELECT key FROM features WHERE a > 10;
                """
            )
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO features VALUES (?, ?, ?)",
                ((k, k * 0.5, f"row {k:08d} " + "x" * 20) for k in range(rows)),
            )
            db.executemany(
                "INSERT INTO lookup VALUES (?, ?)", ((f"c{i}", f"L{i}") for i in range(20))
            )
            db.executemany("INSERT INTO notes VALUES (?)", (("same",), ("same",), ("other",)))
            db.execute("COMMIT")

    def change(self, *, alter_features: bool = False) -> None:
        with contextlib.closing(self.connect()) as db:
            db.execute("BEGIN")
            db.execute("UPDATE features SET a = a + 1 WHERE key < 10")
            db.execute("DELETE FROM features WHERE key BETWEEN 200 AND 204")
            db.execute("INSERT INTO features VALUES (-1, 1, 'new'), (-2, 2, 'new'), (-3, 3, NULL)")
            db.execute("ALTER TABLE lookup ADD COLUMN extra INTEGER DEFAULT 7")
            db.execute("UPDATE lookup SET label = 'changed' WHERE code IN ('c1', 'c2')")
            db.execute("CREATE TABLE added (x)")
            db.execute("INSERT INTO added VALUES (1), (2)")
            db.execute("INSERT INTO notes VALUES ('same')")
            db.execute("PRAGMA user_version = 4")
            if alter_features:
                db.execute("ALTER TABLE features ADD COLUMN c INTEGER DEFAULT 0")
            db.execute("COMMIT")

    def content(self) -> Any:
        with contextlib.closing(self.connect()) as db:
            schema = db.execute(
                "SELECT type, name, sql FROM sqlite_master ORDER BY 1, 2"
            ).fetchall()
            tables = [r[1] for r in schema if r[0] == "table" and not r[1].startswith("sqlite_")]
            rowid = {
                r[1]: "" if "WITHOUT ROWID" in r[2] else "rowid, "
                for r in schema
                if r[0] == "table"
            }
            rows = {
                t: db.execute(f'SELECT {rowid[t]}* FROM "{t}" ORDER BY 1').fetchall()
                for t in tables
            }
            return schema, db.execute("PRAGMA user_version").fetchone(), rows

    def value(self, key: int) -> Any:
        with contextlib.closing(self.connect()) as db:
            return db.execute("SELECT a FROM features WHERE key = ?", (key,)).fetchone()[0]

    def corrupt(self, snapshot: Snapshot) -> None:
        path = Path(snapshot.location) / "data.sqlite"
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
        path.write_bytes(bytes(data))

    def lose_data(self, snapshot: Snapshot) -> None:
        (Path(snapshot.location) / "data.sqlite").unlink()


class PostgresResource(Resource):
    def __init__(self, location: str) -> None:
        self.location = location
        self.url, self.schema = split_location(location)
        self.driver = PostgresSnapshot(lock_timeout_s=5)
        self.expected = Changes(
            "rows", added=7, removed=5, modified=12, tables_added=1, tables_altered=1
        )

    @contextlib.contextmanager
    def connect(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SELECT set_config('search_path', %s, false)", (self.schema,))
            yield conn

    def build(self, rows: int) -> None:
        with self.connect() as db:
            db.execute(
                "CREATE TABLE features "
                "(key bigint PRIMARY KEY, a double precision NOT NULL, b text)"
            )
            db.execute("CREATE INDEX ix_features_b ON features (b)")
            db.execute("CREATE TABLE lookup (code text PRIMARY KEY, label text)")
            db.execute("CREATE TABLE notes (msg text)")
            db.execute(
                "CREATE TABLE events (id serial PRIMARY KEY, code text REFERENCES lookup (code), "
                "at timestamptz NOT NULL DEFAULT '2026-11-24 10:00+00')"
            )
            db.execute(
                "INSERT INTO features SELECT k, k * 0.5, 'row ' || lpad(k::text, 8, '0') || "
                "' ' || repeat('x', 20) FROM generate_series(0, %s - 1) AS k",
                (rows,),
            )
            db.execute("INSERT INTO lookup SELECT 'c' || i, 'L' || i FROM generate_series(0, 19) i")
            db.execute("INSERT INTO notes VALUES ('same'), ('same'), ('other')")
            db.execute("INSERT INTO events (code) VALUES ('c1'), ('c2')")
            db.execute("ANALYZE")

    def change(self, *, alter_features: bool = False) -> None:
        with self.connect() as db, db.transaction():
            db.execute("UPDATE features SET a = a + 1 WHERE key < 10")
            db.execute("DELETE FROM features WHERE key BETWEEN 200 AND 204")
            db.execute("INSERT INTO features VALUES (-1, 1, 'new'), (-2, 2, 'new'), (-3, 3, NULL)")
            db.execute("ALTER TABLE lookup ADD COLUMN extra integer DEFAULT 7")
            db.execute("UPDATE lookup SET label = 'changed' WHERE code IN ('c1', 'c2')")
            db.execute("CREATE TABLE added (x integer)")
            db.execute("INSERT INTO added VALUES (1), (2)")
            db.execute("INSERT INTO notes VALUES ('same')")
            db.execute("INSERT INTO events (code) VALUES ('c3')")
            if alter_features:
                db.execute("ALTER TABLE features ADD COLUMN c integer DEFAULT 0")

    def content(self) -> Any:
        with self.connect() as db:
            tables = [
                r[0]
                for r in db.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "ORDER BY 1",
                    (self.schema,),
                )
            ]
            columns = db.execute(
                "SELECT table_name, column_name, data_type, column_default, is_nullable "
                "FROM information_schema.columns WHERE table_schema = %s "
                "ORDER BY 1, ordinal_position",
                (self.schema,),
            ).fetchall()
            indexes = db.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
                (self.schema,),
            ).fetchall()
            rows = {t: sorted(db.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
            return columns, indexes, rows

    def value(self, key: int) -> Any:
        with self.connect() as db:
            row = db.execute("SELECT a FROM features WHERE key = %s", (key,)).fetchone()
            return None if row is None else row[0]

    def corrupt(self, snapshot: Snapshot) -> None:
        path = Path(snapshot.location) / "table-1.copy"  # features: tables are named in order
        data = path.read_bytes()
        path.write_bytes(data.replace(b"\t0.5\t", b"\t0.6\t", 1))

    def lose_data(self, snapshot: Snapshot) -> None:
        (Path(snapshot.location) / "table-1.copy").unlink()


class DirectoryResource(Resource):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self.driver = DirectorySnapshot()
        # 10 changed + 4 added; 2 files and 1 empty folder removed.
        self.expected = Changes("files", added=4, removed=3, modified=10)

    def build(self, rows: int) -> None:
        (self.path / "features").mkdir(parents=True)
        (self.path / "empty").mkdir()
        (self.path / "deep" / "er").mkdir(parents=True)
        for key in range(rows):
            (self.path / "features" / f"{key}.txt").write_text(f"{key * 0.5}\n" + "x" * 2000)
        (self.path / "deep" / "er" / "model.json").write_text('{"threshold": 0.5}')

    def change(self, *, alter_features: bool = False) -> None:
        for key in CHANGED_KEYS:
            (self.path / "features" / f"{key}.txt").write_text(f"{key * 0.5 + 1}\n")
        for key in (200, 201):
            (self.path / "features" / f"{key}.txt").unlink()
        (self.path / "empty").rmdir()
        for name in ("a", "b", "c"):
            (self.path / "deep" / f"new-{name}.txt").write_text(name)
        (self.path / "added").mkdir()

    def content(self) -> Any:
        found: dict[str, bytes | None] = {}
        for path in sorted(self.path.rglob("*")):
            rel = path.relative_to(self.path).as_posix()
            found[rel] = path.read_bytes() if path.is_file() else None
        return found

    def value(self, key: int) -> Any:
        return (self.path / "features" / f"{key}.txt").read_text()

    def corrupt(self, snapshot: Snapshot) -> None:
        target = Path(snapshot.location) / "files" / "features" / "3.txt"
        target.write_text("1.5\n" + "y" * 2000)

    def lose_data(self, snapshot: Snapshot) -> None:
        (Path(snapshot.location) / "files" / "features" / "3.txt").unlink()


@pytest.fixture
def make_resource(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    def make(kind: str, rows: int = 1000) -> Resource:
        resource: Resource
        if kind == "sqlite":
            resource = SqliteResource(tmp_path / "features.db")
        elif kind == "postgresql":
            database: str = request.getfixturevalue("pg_database")
            schema = f"s_{uuid.uuid4().hex[:12]}"
            url, _ = split_location(database)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            resource = PostgresResource(f"{database}?schema={schema}")
        else:
            resource = DirectoryResource(tmp_path / "data")
        resource.build(rows)
        return resource

    return make


def kind_params() -> list[Any]:
    return [
        pytest.param(kind, marks=[pytest.mark.postgres] if kind == "postgresql" else [])
        for kind in KINDS
    ]


# -- a snapshot and a restore ---------------------------------------------------------------


@pytest.mark.parametrize("kind", kind_params())
def test_restore_gives_back_the_data_exactly_and_counts_the_writes_it_discards(
    kind: str, make_resource: Any, tmp_path: Path
) -> None:
    resource: Resource = make_resource(kind)
    driver = resource.driver
    original = resource.content()
    snap = driver.snapshot(resource.location, tmp_path / "snaps", resource="features")
    assert snap.driver == kind
    assert driver.checksum(resource.location) == snap.checksum
    assert driver.changes_since(snap, resource.location).total == 0

    resource.change()
    assert resource.content() != original
    assert driver.checksum(resource.location) != snap.checksum
    assert driver.changes_since(snap, resource.location) == resource.expected

    result = driver.restore(snap, resource.location)
    assert result.verified
    assert result.checksum == snap.checksum
    assert result.changes == resource.expected
    assert result.writes_discarded == resource.expected.total
    assert result.bytes == snap.size_bytes
    assert driver.checksum(resource.location) == snap.checksum
    assert resource.content() == original
    assert driver.changes_since(snap, resource.location).total == 0

    again = driver.restore(snap, resource.location)
    assert again.writes_discarded == 0
    assert resource.content() == original


@pytest.mark.parametrize("kind", kind_params())
def test_a_changed_snapshot_is_refused_and_the_live_data_is_untouched(
    kind: str, make_resource: Any, tmp_path: Path
) -> None:
    resource: Resource = make_resource(kind)
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="features")
    resource.change()
    before = resource.content()
    resource.corrupt(snap)
    with pytest.raises(SnapshotCorrupt, match=r"corrupt.*nothing was restored") as caught:
        resource.driver.restore(snap, resource.location)
    assert caught.value.exit_code == 5
    assert resource.content() == before


@pytest.mark.parametrize("kind", kind_params())
def test_a_missing_snapshot_is_refused_and_the_live_data_is_untouched(
    kind: str, make_resource: Any, tmp_path: Path
) -> None:
    resource: Resource = make_resource(kind)
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="features")
    resource.change()
    before = resource.content()
    resource.lose_data(snap)
    with pytest.raises((SnapshotMissing, SnapshotCorrupt)) as caught:
        resource.driver.restore(snap, resource.location)
    assert "features" in caught.value.message
    resource.driver.delete(snap)
    assert not Path(snap.location).exists()
    with pytest.raises(SnapshotMissing, match="missing") as gone:
        resource.driver.restore(snap, resource.location)
    assert gone.value.exit_code == 3
    assert resource.content() == before


@pytest.mark.parametrize("kind", kind_params())
def test_a_snapshot_whose_store_checksum_differs_is_refused(
    kind: str, make_resource: Any, tmp_path: Path
) -> None:
    resource: Resource = make_resource(kind)
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="features")
    resource.change()
    before = resource.content()
    other = Snapshot(**{**snap.__dict__, "checksum": "0" * 64})
    with pytest.raises(SnapshotCorrupt):
        resource.driver.restore(other, resource.location)
    assert resource.content() == before


# -- consistency while others write -----------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in kind_params() if k.values[0] != "directory"])
def test_a_snapshot_taken_while_others_write_is_one_consistent_cut(
    kind: str, make_resource: Any, tmp_path: Path
) -> None:
    """A writer adds 1 to feature 0 and a row to `notes` in each transaction; in a snapshot
    taken meanwhile (restored afterwards) the two still agree."""
    resource: Resource = make_resource(kind, rows=50_000)
    stop = threading.Event()
    moves = [0]

    def write() -> None:
        if isinstance(resource, SqliteResource):
            db = resource.connect()
            while not stop.is_set():
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE features SET a = a + 1 WHERE key = 0")
                db.execute("INSERT INTO notes VALUES ('move')")
                db.execute("COMMIT")
                moves[0] += 1
            db.close()
        else:
            assert isinstance(resource, PostgresResource)
            with resource.connect() as pg:
                while not stop.is_set():
                    with pg.transaction():
                        pg.execute("UPDATE features SET a = a + 1 WHERE key = 0")
                        pg.execute("INSERT INTO notes VALUES ('move')")
                    moves[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.2)
        snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="f")
        time.sleep(0.1)
    finally:
        stop.set()
        writer.join()
    assert moves[0] > 0
    resource.driver.restore(snap, resource.location)
    notes = resource.content()[-1]["notes"]
    moved = sum(1 for row in notes if "move" in row)
    assert 0 < moved < moves[0], "the snapshot was not taken while the writer wrote"
    assert resource.value(0) == moved


# -- atomicity under kill -9 -------------------------------------------------------------------


def worker(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.snapshot_worker", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != expected:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"worker said {line!r}, not {expected!r}: {err}")


def settle(resource: Resource, application: str) -> None:
    """Wait until PostgreSQL has ended the killed client's session (and its transaction)."""
    if not isinstance(resource, PostgresResource):
        return
    deadline = time.monotonic() + 60
    with psycopg.connect(resource.url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError("the killed restore's session did not end")


@pytest.mark.parametrize("kind", kind_params())
def test_a_restore_killed_at_any_moment_leaves_old_or_restored_data_never_a_mix(
    kind: str, make_resource: Any, tmp_path: Path
) -> None:
    rows = {"sqlite": 100_000, "postgresql": 100_000, "directory": 600}[kind]
    resource: Resource = make_resource(kind, rows=rows)
    driver = resource.driver
    snap = driver.snapshot(resource.location, tmp_path / "snaps", resource="features")
    rng = random.Random(f"{SEED}-{kind}")

    def restore_process(location: str) -> subprocess.Popen[str]:
        return worker("restore", kind, location, snap.location)

    resource.change(alter_features=True)
    proc = restore_process(resource.location)
    wait_for_line(proc, "go")
    started = time.monotonic()
    wait_for_line(proc, "done")
    duration = time.monotonic() - started
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert driver.checksum(resource.location) == snap.checksum

    trials = 6
    outcomes: list[tuple[float, bool, str]] = []
    for trial in range(trials):
        if driver.checksum(resource.location) == snap.checksum:
            resource.change(alter_features=True)
        old = driver.checksum(resource.location)
        assert old != snap.checksum
        application = f"mlops-kill-{uuid.uuid4().hex[:8]}"
        location = resource.location
        if kind == "postgresql":
            location += f"&application_name={application}"
        proc = restore_process(location)
        wait_for_line(proc, "go")
        delay = (trial + rng.random()) / trials * 1.3 * duration
        time.sleep(delay)
        alive = proc.poll() is None
        proc.kill()
        proc.communicate(timeout=30)
        settle(resource, application)
        driver.recover(resource.location)
        after = driver.checksum(resource.location)
        assert after in (old, snap.checksum), (
            f"trial {trial}: killed {delay:.2f} s into a {duration:.2f} s restore, the data is "
            "neither the old nor the restored"
        )
        outcomes.append((delay, alive, "restored" if after == snap.checksum else "old"))
        if isinstance(resource, DirectoryResource):
            assert not list(resource.path.parent.glob(".data.mlops-restore*")), "leftovers"
    mid = [o for o in outcomes if o[1]]
    print(f"{kind}: restore {duration:.2f} s; kills (s, mid-restore, result): {outcomes}")
    assert len(mid) >= 3, f"too few kills landed inside the restore: {outcomes}"


def test_a_folder_restore_killed_between_its_two_renames_is_completed_by_recover(
    make_resource: Any, tmp_path: Path
) -> None:
    """Without RENAME_EXCHANGE a swap is two renames; a crash between them leaves no live
    folder, and `recover` (run by every later use) finishes the swap."""
    resource: Resource = make_resource("directory", rows=300)
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="files")
    original = resource.content()
    resource.change()
    proc = worker(
        "restore", "directory", resource.location, snap.location, "--renames-then-die", "1"
    )
    proc.communicate(timeout=60)
    assert proc.returncode == -9
    live = Path(resource.location)
    assert not live.exists()
    assert list(live.parent.glob(".data.mlops-restore.json"))
    assert resource.driver.checksum(resource.location) == snap.checksum
    assert resource.content() == original
    assert not list(live.parent.glob(".data.mlops-restore*"))


# -- serving goes on during a restore -----------------------------------------------------------


@dataclass
class Reads:
    during: list[tuple[float, float, int, Any]]
    after: list[tuple[float, float, int, Any]]
    errors: list[str]

    @property
    def longest_ms(self) -> float:
        return max(r[1] for r in self.during) * 1000


def read_during(resource: Resource, kind: str, tmp_path: Path, snap: Snapshot) -> tuple[Reads, Any]:
    keys = ",".join(str(k) for k in [*CHANGED_KEYS, *STEADY_KEYS])
    stop = tmp_path / "stop-reading"
    out = tmp_path / "reads.json"
    reader = worker("read", kind, resource.location, keys, str(stop), str(out))
    try:
        wait_for_line(reader, "reading")
        time.sleep(0.3)
        begin = time.time()
        result = resource.driver.restore(snap, resource.location)
        end = time.time()
        time.sleep(0.3)
    finally:
        stop.touch()
        _, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    data = json.loads(out.read_text())
    reads = [tuple(r) for r in data["reads"]]
    return (
        Reads(
            during=[r for r in reads if begin <= r[0] <= end],
            after=[r for r in reads if r[0] > end],
            errors=data["errors"],
        ),
        result,
    )


@pytest.mark.parametrize(
    ("kind", "alter_features"),
    [
        ("sqlite", False),
        ("sqlite", True),
        pytest.param("postgresql", False, marks=pytest.mark.postgres),
        pytest.param("postgresql", True, marks=pytest.mark.postgres),
        ("directory", False),
    ],
)
def test_readers_of_the_feature_table_are_answered_all_through_a_restore(
    kind: str, alter_features: bool, make_resource: Any, tmp_path: Path
) -> None:
    rows = {"sqlite": 150_000, "postgresql": 150_000, "directory": 600}[kind]
    resource: Resource = make_resource(kind, rows=rows)
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="features")
    keys = [*CHANGED_KEYS, *STEADY_KEYS]
    restored = {k: resource.value(k) for k in keys}
    resource.change(alter_features=alter_features)
    old = {k: resource.value(k) for k in keys}
    assert all(old[k] != restored[k] for k in CHANGED_KEYS)

    reads, result = read_during(resource, kind, tmp_path, snap)

    assert reads.errors == []
    assert len(reads.during) >= 20, "readers were not answered during the restore"
    switched = False
    for _, _, key, answer in sorted(reads.during):
        assert answer in (old[key], restored[key])
        if key in CHANGED_KEYS:
            if answer == restored[key]:
                switched = True
            assert not (switched and answer == old[key]), "old data seen after the restored"
    assert reads.after, "no reads after the restore"
    assert all(answer == restored[key] for _, _, key, answer in reads.after)
    print(
        f"{kind} (features altered: {alter_features}): restore {result.seconds:.2f} s, "
        f"{len(reads.during)} reads during it, the longest waited {reads.longest_ms:.1f} ms"
    )


# -- failures change nothing --------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in kind_params() if k.values[0] != "directory"])
def test_a_restore_that_cannot_get_its_lock_gives_up_and_changes_nothing(
    kind: str, make_resource: Any, tmp_path: Path
) -> None:
    resource: Resource = make_resource(kind)
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="features")
    resource.change()
    before = resource.content()
    if isinstance(resource, SqliteResource):
        resource.driver = SqliteSnapshot(busy_timeout_s=0.3)
        holder = resource.connect()
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE features SET b = 'held' WHERE key = 500")
        try:
            with pytest.raises(RestoreFailed, match="locked by another writer") as caught:
                resource.driver.restore(snap, resource.location)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    else:
        assert isinstance(resource, PostgresResource)
        resource.driver = PostgresSnapshot(lock_timeout_s=0.5, lock_attempt_s=0.1)
        with resource.connect() as holder, holder.transaction(force_rollback=True):
            holder.execute("UPDATE features SET b = 'held' WHERE key = 500")
            with pytest.raises(RestoreFailed, match="could not lock") as caught:
                resource.driver.restore(snap, resource.location)
    assert caught.value.exit_code == 6
    assert resource.content() == before


@pytest.mark.postgres
def test_a_schema_with_triggers_is_refused_at_snapshot_time(
    make_resource: Any, tmp_path: Path
) -> None:
    resource = make_resource("postgresql")
    assert isinstance(resource, PostgresResource)
    with resource.connect() as db:
        db.execute(
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RETURN NEW; END $$"
        )
        db.execute(
            "CREATE TRIGGER t BEFORE UPDATE ON features FOR EACH ROW EXECUTE FUNCTION touch()"
        )
    with pytest.raises(UnsupportedResource, match="'features' has triggers"):
        resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="features")
    assert not list((tmp_path / "snaps").iterdir())


def test_a_missing_resource_is_a_clear_error(tmp_path: Path) -> None:
    from mlops.errors import UnreadableFile

    with pytest.raises(UnreadableFile, match="does not exist"):
        SqliteSnapshot().snapshot(str(tmp_path / "nope.db"), tmp_path / "s", resource="x")
    with pytest.raises(UnreadableFile, match="does not exist"):
        DirectorySnapshot().snapshot(str(tmp_path / "nope"), tmp_path / "s", resource="x")


# -- values that compare equal yet differ ---------------------------------------------------------


def test_sqlite_tells_1_from_1_0_in_untyped_columns_and_not_0_0_from_minus_0_0(
    make_resource: Any, tmp_path: Path
) -> None:
    """As SQLite's own `=` and text output do: 1 and 1.0 differ, 0.0 and -0.0 do not."""
    resource = make_resource("sqlite")
    assert isinstance(resource, SqliteResource)
    with contextlib.closing(resource.connect()) as db:
        db.execute("CREATE TABLE odd (id INTEGER PRIMARY KEY, v)")
        db.execute("INSERT INTO odd VALUES (1, 1), (2, 0.0), (3, 'x')")
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="odd")
    with contextlib.closing(resource.connect()) as db:
        db.execute("UPDATE odd SET v = -0.0 WHERE id = 2")
    assert resource.driver.checksum(resource.location) == snap.checksum
    with contextlib.closing(resource.connect()) as db:
        db.execute("UPDATE odd SET v = 1.0 WHERE id = 1")
        assert db.execute("SELECT count(*) FROM odd WHERE v = 1").fetchone()[0] == 1
    assert resource.driver.checksum(resource.location) != snap.checksum
    assert resource.driver.changes_since(snap, resource.location) == Changes("rows", modified=1)
    resource.driver.restore(snap, resource.location)
    assert resource.driver.checksum(resource.location) == snap.checksum
    with contextlib.closing(resource.connect()) as db:
        rows = db.execute("SELECT id, typeof(v) FROM odd ORDER BY id").fetchall()
    assert rows == [(1, "integer"), (2, "real"), (3, "text")]


@pytest.mark.postgres
def test_postgresql_tells_values_that_compare_equal_but_read_differently(
    make_resource: Any, tmp_path: Path
) -> None:
    """numeric 1.5 = 1.50 and float 0 = -0 in SQL, yet a reader sees other text: a restore
    must put back the snapshot's exact values (a json column has no = at all)."""
    resource = make_resource("postgresql")
    assert isinstance(resource, PostgresResource)
    with resource.connect() as db:
        db.execute("CREATE TABLE odd (id int PRIMARY KEY, n numeric, f float8, j json)")
        db.execute("INSERT INTO odd VALUES (1, 1.5, 0, '{\"a\": 1}'), (2, 2, 1, '[]')")
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="odd")
    with resource.connect() as db:
        db.execute("UPDATE odd SET n = 1.50, f = '-0', j = '{\"a\":1}' WHERE id = 1")
        db.execute("UPDATE odd SET n = 2.0 WHERE id = 2")
    assert resource.driver.changes_since(snap, resource.location) == Changes("rows", modified=2)
    resource.driver.restore(snap, resource.location)
    assert resource.driver.checksum(resource.location) == snap.checksum
    with resource.connect() as db:
        rows = db.execute("SELECT id, n::text, f::text, j::text FROM odd ORDER BY id").fetchall()
    assert rows == [(1, "1.5", "0", '{"a": 1}'), (2, "2", "1", "[]")]


@pytest.mark.parametrize("exchange", [True, False])
def test_a_folder_restore_that_does_not_verify_is_swapped_back(
    exchange: bool, make_resource: Any, tmp_path: Path
) -> None:
    """Something writes into the restored copy just before the swap: the swapped-in folder
    does not match the snapshot, so the old folder is put back and the restore fails."""
    resource: Resource = make_resource("directory", rows=300)
    snap = resource.driver.snapshot(resource.location, tmp_path / "snaps", resource="files")
    resource.change()
    before = resource.content()
    parent = Path(resource.location).parent

    def intrude() -> None:
        (staged,) = [p for p in parent.glob(".data.mlops-restore-*") if p.is_dir()]
        (staged / "intruder.txt").write_text("written during the restore")

    driver = DirectorySnapshot(exchange=exchange, pause_before_swap=intrude)
    with pytest.raises(RestoreFailed, match="did not verify") as caught:
        driver.restore(snap, resource.location)
    assert caught.value.exit_code == 6
    assert resource.content() == before
    assert not list(parent.glob(".data.mlops-restore*"))
