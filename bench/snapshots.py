"""Data snapshots: snapshot and restore of a ~100 MB feature table, and serving during a restore.

For each backend (SQLite, PostgreSQL) the bench builds a feature table (`key` bigint
primary key, eight float features, a 16-character label) of about 100 MB: 1,000,000 rows in
SQLite, 750,000 in PostgreSQL (whose rows and primary-key index take more room), then:

1. takes a snapshot (`SqliteSnapshot` / `PostgresSnapshot`) and prints its time and size;
2. runs a "migration" and restores the snapshot, in two scenarios:
     data    10 % of the rows updated (the restore puts back only those rows)
     schema  the same, plus a column added to the table (the restore rebuilds the table
             and swaps it in)
   and prints the restore time and the writes it counted;
3. all along, a separate reader process serves point lookups of the live table
   (`SELECT f1..f8 FROM features WHERE key = ?`, random keys, paced at `--rate` per second,
   its own connection) and records each lookup's latency. For each scenario the bench
   prints p50 / p99 / max of the lookups during the restore, next to those of the
   `--baseline-s` seconds just before it (no restore running), in the same run.

    .venv/bin/python bench/snapshots.py [--backends sqlite,postgresql] [--rows N (both)]
        [--rate 500] [--baseline-s 5] [--seed 0]

Scratch files go to bench/.work/snapshots/ (removed at the end); the PostgreSQL database
`mlops_bench_snap_<random>` is made on 127.0.0.1 and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from mlops.snapshots import PostgresSnapshot, SqliteSnapshot
from mlops.snapshots.driver import RestoreResult, Snapshot

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/"
WORK = Path(__file__).resolve().parent / ".work" / "snapshots"
FEATURES = ", ".join(f"f{i}" for i in range(1, 9))
LOOKUP = f"SELECT {FEATURES} FROM features WHERE key = "


# -- the reader --------------------------------------------------------------------------------


def reader(backend: str, location: str, rows: int, rate: float, stop: Path, out: Path) -> None:
    rng = random.Random(1)
    if backend == "sqlite":
        db = sqlite3.connect(location, isolation_level=None, timeout=60)

        def lookup(key: int) -> Any:
            return db.execute(LOOKUP + "?", (key,)).fetchone()
    else:
        pg = psycopg.connect(location, autocommit=True)

        def lookup(key: int) -> Any:
            return pg.execute(LOOKUP + "%s", (key,), prepare=True).fetchone()

    samples: list[tuple[float, float]] = []
    errors = 0
    interval = 1.0 / rate
    next_at = time.perf_counter()
    print("reading", flush=True)
    while not stop.exists():
        now = time.perf_counter()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        started = time.time()
        t0 = time.perf_counter()
        try:
            lookup(rng.randrange(rows))
        except Exception:  # a failed lookup is counted, not fatal: serving must go on
            errors += 1
            continue
        samples.append((started, time.perf_counter() - t0))
    out.write_text(json.dumps({"samples": samples, "errors": errors}))


@contextlib.contextmanager
def reading(backend: str, location: str, rows: int, rate: float) -> Iterator[Path]:
    stop = WORK / f"stop-{backend}"
    out = WORK / f"reads-{backend}.json"
    stop.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--reader",
            backend,
            location,
            str(rows),
            str(rate),
            str(stop),
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "reading":
        raise SystemExit("the reader did not start")
    try:
        yield out
    finally:
        stop.touch()
        proc.communicate(timeout=120)


def window(samples: list[tuple[float, float]], start: float, end: float) -> dict[str, float]:
    lat = sorted(d * 1000 for t, d in samples if start <= t <= end)
    if not lat:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "n": len(lat),
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "max": lat[-1],
    }


# -- the resources -----------------------------------------------------------------------------


def build_sqlite(path: Path, rows: int, seed: int) -> int:
    rng = random.Random(seed)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")
    cols = ", ".join(f"f{i} REAL NOT NULL" for i in range(1, 9))
    db.execute(f"CREATE TABLE features (key INTEGER PRIMARY KEY, {cols}, label TEXT NOT NULL)")
    db.execute("BEGIN")
    db.executemany(
        f"INSERT INTO features VALUES (?, {', '.join('?' * 9)})",
        ((k, *(rng.random() for _ in range(8)), secrets.token_hex(8)) for k in range(rows)),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA synchronous = NORMAL")
    db.close()
    return path.stat().st_size


def migrate_sqlite(path: Path, schema: bool) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE features SET f1 = f1 + 1 WHERE key % 10 = 0")
    if schema:
        db.execute("ALTER TABLE features ADD COLUMN f9 REAL NOT NULL DEFAULT 0")
    db.execute("COMMIT")
    db.close()


def build_postgresql(url: str, rows: int, seed: int) -> int:
    with psycopg.connect(url, autocommit=True) as db:
        cols = ", ".join(f"f{i} double precision NOT NULL" for i in range(1, 9))
        db.execute(f"CREATE TABLE features (key bigint PRIMARY KEY, {cols}, label text NOT NULL)")
        db.execute("SELECT setseed(%s)", (seed / 2**31,))
        db.execute(
            f"INSERT INTO features SELECT k, {', '.join('random()' for _ in range(8))}, "
            "substr(md5(k::text || random()::text), 1, 16) "
            "FROM generate_series(0, %s - 1) AS k",
            (rows,),
        )
        db.execute("VACUUM ANALYZE features")
        row = db.execute("SELECT pg_total_relation_size('features')").fetchone()
        return int(row[0]) if row else 0


def migrate_postgresql(url: str, schema: bool) -> None:
    with psycopg.connect(url) as db:
        db.execute("UPDATE features SET f1 = f1 + 1 WHERE key % 10 = 0")
        if schema:
            db.execute("ALTER TABLE features ADD COLUMN f9 double precision NOT NULL DEFAULT 0")
        db.commit()


# -- the run -----------------------------------------------------------------------------------


DEFAULT_ROWS = {"sqlite": 1_000_000, "postgresql": 750_000}


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    rows = args.rows or DEFAULT_ROWS[backend]
    result: dict[str, Any] = {"backend": backend, "rows": rows}
    admin: psycopg.Connection[tuple[Any, ...]] | None = None
    database = ""
    if backend == "sqlite":
        path = WORK / "features.db"
        location = str(path)
        t0 = time.perf_counter()
        result["live_bytes"] = build_sqlite(path, rows, args.seed)
        driver: SqliteSnapshot | PostgresSnapshot = SqliteSnapshot()
        reader_location = location
    else:
        database = f"mlops_bench_snap_{secrets.token_hex(4)}"
        admin = psycopg.connect(PG_SERVER + "postgres", autocommit=True)
        admin.execute(f'CREATE DATABASE "{database}"')
        location = reader_location = PG_SERVER + database
        t0 = time.perf_counter()
        result["live_bytes"] = build_postgresql(location, rows, args.seed)
        driver = PostgresSnapshot()
    result["build_s"] = time.perf_counter() - t0
    try:
        with reading(backend, reader_location, rows, args.rate) as out:
            marks: dict[str, tuple[float, float]] = {}
            time.sleep(args.baseline_s)
            start = time.time()
            t0 = time.perf_counter()
            snap: Snapshot = driver.snapshot(location, WORK / "snaps", resource="features")
            result["snapshot_s"] = time.perf_counter() - t0
            marks["snapshot"] = (start, time.time())
            result["snapshot_bytes"] = snap.size_bytes
            for scenario in ("data", "schema"):
                if backend == "sqlite":
                    migrate_sqlite(Path(location), schema=scenario == "schema")
                else:
                    migrate_postgresql(location, schema=scenario == "schema")
                time.sleep(args.baseline_s)
                start = time.time()
                restored: RestoreResult = driver.restore(snap, location)
                marks[scenario] = (start, time.time())
                result[f"{scenario}_restore_s"] = restored.seconds
                result[f"{scenario}_writes"] = restored.changes.describe()
            time.sleep(0.5)
        reads = json.loads(out.read_text())
        samples = [tuple(s) for s in reads["samples"]]
        result["read_errors"] = reads["errors"]
        for name, (begin, end) in marks.items():
            result[f"{name}_reads"] = window(samples, begin, end)
            result[f"{name}_baseline"] = window(samples, begin - args.baseline_s, begin)
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.close()
    return result


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def report(r: dict[str, Any], baseline_s: float) -> None:
    print(
        f"\n== {r['backend']}: {r['rows']:,} rows, live table {mb(r['live_bytes'])} "
        f"(built in {r['build_s']:.1f} s)"
    )
    print(f"snapshot: {r['snapshot_s']:.2f} s, {mb(r['snapshot_bytes'])} on disk")
    for scenario in ("data", "schema"):
        print(
            f"restore ({scenario}): {r[f'{scenario}_restore_s']:.2f} s, "
            f"writes discarded: {r[f'{scenario}_writes']}"
        )
    print(f"{'point lookups':<26}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name in ("snapshot", "data", "schema"):
        for label, stats in (
            (f"{name}: {baseline_s:g} s before", r[f"{name}_baseline"]),
            (f"{name}: during", r[f"{name}_reads"]),
        ):
            print(
                f"{label:<26}{stats['n']:>7}{stats['p50']:>9.2f}{stats['p99']:>9.2f}"
                f"{stats['max']:>9.2f}"
            )
    print(f"failed lookups: {r['read_errors']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        backend, location, rows, rate, stop, out = sys.argv[2:8]
        reader(backend, location, int(rows), float(rate), Path(stop), Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--baseline-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    began = time.perf_counter()
    print(
        f"rate={args.rate:g}/s baseline={args.baseline_s:g}s "
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} sqlite={sqlite3.sqlite_version}"
    )
    try:
        for backend in args.backends.split(","):
            report(run_backend(backend, args), args.baseline_s)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
