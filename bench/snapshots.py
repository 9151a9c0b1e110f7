"""Data snapshots: snapshot and restore of a ~100 MB feature table, and serving during a restore.

For each backend (SQLite, PostgreSQL) the bench builds a feature table (`key` bigint
primary key, eight float features, a 16-character label) of about 100 MB: 1,000,000 rows in
SQLite, 750,000 in PostgreSQL (whose rows and primary-key index take more room), then runs two
parts on it (`--parts`):

direct: the snapshot drivers, called in-process.
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

gateway: the product path, as a user runs it.
1. a fresh MLOPS home and SQLite store under bench/.work/snapshots/; a LogisticRegression on
   f1..f8 trained here (three versions, joblib, `--trust`), and a lookup file that reads
   f1..f8 from the table by `key`; `mlops serve` (one worker, the controller on) in a
   subprocess;
2. `mlops data add bench features --sqlite PATH` (or `--postgresql URL`, policy restore),
   `mlops register feats lookup.yaml`, then the stable release (revision 1):
   `mlops deploy bench --model clf:1 --component lookup=feats:1`;
3. a load generator process sends `POST /v1/models/bench:predict` with
   `{"instances": [{"key": K}]}` (random keys) at `--gateway-rate` per second, on up to 16
   keep-alive connections, and records each answer's status, `X-Release-Revision` and latency
   (from the time it was due to be sent, so a stall also delays the requests queued behind it);
4. per scenario (data, schema, as above): `mlops deploy bench --model clf:N --migration
   migrate.sql` (snapshot, then the migration), `--idle-s` seconds of serving, then
   `mlops rollback bench`, which switches traffic back to the stable release and then
   restores the snapshot. The restore window runs from the first answer of the rollback's
   revision (the switch, as the clients see it) to the end of the `mlops rollback` call (the
   restore's outcome written) or, when later, to when the gateway's controller logs that it
   ran the restore too (it finishes marked restores each tick); the baseline is a window of
   the same length ending when the rollback call starts (shorter if the deploy ended less
   than that before: the `s` column gives each window's length). The bench prints n / p50 /
   p99 / max / non-200 for both, and for the deploy call (snapshot + migration) against the
   same length before it.
   With `--requests features` the requests carry the eight features instead of the key,
   and the release has no lookup.

    .venv/bin/python bench/snapshots.py [--backends sqlite,postgresql] [--rows N (both)]
        [--parts direct,gateway] [--rate 500] [--baseline-s 5] [--gateway-rate 200]
        [--idle-s 20] [--requests lookup|features] [--serve-arg=--no-controller] [--seed 0]

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
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

from mlops.snapshots import PostgresSnapshot, SqliteSnapshot
from mlops.snapshots.driver import RestoreResult, Snapshot

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/"
WORK = Path(__file__).resolve().parent / ".work" / "snapshots"
FEATURES = ", ".join(f"f{i}" for i in range(1, 9))
LOOKUP = f"SELECT {FEATURES} FROM features WHERE key = "
MLOPS = str(Path(sys.executable).with_name("mlops"))
SCENARIOS = ("data", "schema")


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


# -- the gateway path: load generator -----------------------------------------------------------


def loader(
    url: str, mode: str, rows: int, rate: float, stop: Path, out: Path, max_s: float
) -> None:
    """Paced (open-loop) requests to `url` until `stop` exists or `max_s` pass; writes
    [due wall time, latency s, status, X-Release-Revision] per request to `out`."""
    import asyncio
    from urllib.parse import urlsplit

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loadgen import read_response

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    rng = random.Random(2)

    def body() -> bytes:
        if mode == "lookup":
            instance: Any = {"key": rng.randrange(rows)}
        else:
            instance = [rng.random() for _ in range(8)]
        data = json.dumps({"instances": [instance]}).encode()
        return head + str(len(data)).encode() + b"\r\n\r\n" + data

    samples: list[tuple[float, float, int, int]] = []

    async def run() -> None:
        # Up to 16 keep-alive connections, opened when needed: a request waits for a free one.
        pool: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(16):
            pool.put_nowait(None)

        async def one(due_wall: float, due: float, request: bytes) -> None:
            conn = await pool.get()
            status, revision = 0, -1
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                conn[1].write(request)
                status, revision = await asyncio.wait_for(read_response(conn[0]), 15)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                status = 0  # no answer: counted as an error
                if conn is not None:
                    conn[1].close()
                conn = None
            finally:
                pool.put_nowait(conn)
            samples.append((due_wall, time.perf_counter() - due, status, revision))

        tasks = set()
        interval = 1.0 / rate
        start = time.perf_counter()
        wall0 = time.time() - start
        count = 0
        print("loading", flush=True)
        while count < rate * max_s and not stop.exists():
            due = start + count * interval
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(one(wall0 + due, due, body()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            count += 1
        await asyncio.gather(*tasks)

    asyncio.run(run())
    out.write_text(json.dumps({"samples": samples}))


@contextlib.contextmanager
def loading(url: str, mode: str, rows: int, rate: float, max_s: float) -> Iterator[Path]:
    stop = WORK / "stop-loader"
    out = WORK / "loader.json"
    stop.unlink(missing_ok=True)
    args = [url, mode, str(rows), str(rate), str(stop), str(out), str(max_s)]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--loader", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "loading":
        raise SystemExit("the load generator did not start")
    try:
        yield out
    finally:
        stop.touch()
        proc.communicate(timeout=120)


def answers(samples: list[list[float]], start: float, end: float) -> dict[str, Any]:
    """Latency percentiles of the requests due in [start, end], and the ones not answered 200."""
    inside = [s for s in samples if start <= s[0] <= end]
    stats: dict[str, Any] = dict(window([(s[0], s[1]) for s in inside], start, end))
    stats["seconds"] = end - max(start, samples[0][0]) if samples else 0.0
    stats["non_200"] = sum(1 for s in inside if s[2] != 200)
    stats["revisions"] = sorted({int(s[3]) for s in inside})
    return stats


# -- the gateway path: the product -------------------------------------------------------------


class Mlops:
    """The `mlops` command and `mlops serve` with their own home and SQLite store."""

    def __init__(self, home: Path, serve_args: list[str]) -> None:
        home.mkdir(parents=True)
        self.home = home
        self.serve_args = serve_args
        self.env = {
            **os.environ,
            "MLOPS_HOME": str(home),
            "MLOPS_STORE": f"sqlite:///{home / 'mlops.db'}",
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.server: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __call__(self, *args: str) -> tuple[Any, float, float]:
        """Run `mlops ARGS -o json`: (its output, wall time at start, at end)."""
        start = time.time()
        done = subprocess.run(
            [MLOPS, *args, "-o", "json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        end = time.time()
        if done.returncode != 0:
            raise SystemExit(f"mlops {' '.join(args)}: exit {done.returncode}: {done.stderr}")
        return (json.loads(done.stdout) if done.stdout.strip() else None), start, end

    def plain(self, *args: str) -> None:
        done = subprocess.run(
            [MLOPS, *args], env=self.env, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"mlops {' '.join(args)}: exit {done.returncode}: {done.stderr}")

    def serve(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        log = open(self.home / "serve.log", "wb")  # noqa: SIM115 (the server's whole life)
        self.server = subprocess.Popen(
            [MLOPS, "serve", "--port", str(port), "--log-level", "warning", *self.serve_args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if self.server.poll() is not None:
                raise SystemExit(f"mlops serve exited: {(self.home / 'serve.log').read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200:
                    return self.url
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"mlops serve did not start: {(self.home / 'serve.log').read_text()}"
                )
            time.sleep(0.1)

    def restore_lines(self) -> list[str]:
        """What the controller in `mlops serve` logged of the restores it ran (it finishes
        the restores that rollbacks marked, each tick)."""
        log = (self.home / "serve.log").read_text(errors="replace")
        return [
            line
            for line in log.splitlines()
            if "data features" in line or "data restore failed" in line
        ]

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


def train_models(folder: Path, seed: int) -> list[Path]:
    """Three LogisticRegression versions on f1..f8 (uniform in [0, 1), as in the table)."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.random((5000, 8))
    y = (x[:, 0] + x[:, 1] - x[:, 2] + 0.2 * rng.standard_normal(5000) > 0.5).astype(int)
    paths = []
    for version, c in enumerate((1.0, 0.1, 10.0), start=1):
        path = folder / f"clf-{version}.joblib"
        joblib.dump(LogisticRegression(C=c).fit(x, y), path)
        paths.append(path)
    return paths


LOOKUP_FILE = f"""lookup:
  resource: features
  table: features
  key: key
  columns: [{FEATURES}]
"""


def migration_sql(backend: str, schema: bool) -> str:
    sql = "UPDATE features SET f1 = f1 + 1 WHERE key % 10 = 0;\n"
    if schema:
        kind = "REAL" if backend == "sqlite" else "double precision"
        sql += f"ALTER TABLE features ADD COLUMN f9 {kind} NOT NULL DEFAULT 0;\n"
    return sql


def through_gateway(
    backend: str, location: str, rows: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Serve the stable release through `mlops serve` while `mlops rollback` restores."""
    lookup = args.requests == "lookup"
    result: dict[str, Any] = {
        "requests": args.requests,
        "rate": args.gateway_rate,
        "serve": " ".join(["mlops serve", *args.serve_arg]),
    }
    mlops = Mlops(WORK / f"mlops-{backend}", args.serve_arg)
    models = train_models(WORK / "models", args.seed)
    for path in models:
        mlops("register", "clf", str(path), "--trust")
    where = ["--sqlite", location] if backend == "sqlite" else ["--postgresql", location]
    mlops.plain("data", "add", "bench", "features", *where, "--policy", "restore")
    first = ["--model", "clf:1"]
    if lookup:
        spec = WORK / "lookup.yaml"
        spec.write_text(LOOKUP_FILE)
        mlops("register", "feats", str(spec))
        first += ["--component", "lookup=feats:1"]
    mlops("deploy", "bench", *first, "--reason", "the stable release")
    url = mlops.serve() + "/v1/models/bench:predict"
    try:
        probe = {"instances": [{"key": 1} if lookup else [0.5] * 8]}
        deadline = time.monotonic() + 30
        while (answer := httpx.post(url, json=probe, timeout=10)).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway does not serve bench: {answer.text}")
            time.sleep(0.2)
        result["probe"] = answer.json()
        marks: dict[str, dict[str, Any]] = {}
        max_s = 4 * args.idle_s + 600  # a bound: the run stops it long before
        with loading(url, args.requests, rows, args.gateway_rate, max_s) as out:
            quiet = time.time()  # since when nothing but serving has run
            for number, scenario in enumerate(SCENARIOS, start=2):
                time.sleep(args.idle_s)
                sql = WORK / f"migrate-{scenario}.sql"
                sql.write_text(migration_sql(backend, scenario == "schema"))
                deployed, d0, d1 = mlops(
                    "deploy", "bench", "--model", f"clf:{number}", "--migration", str(sql),
                    "--reason", f"{scenario} migration",
                )  # fmt: skip
                time.sleep(args.idle_s)
                seen = len(mlops.restore_lines())
                rolled, r0, r1 = mlops("rollback", "bench", "--reason", "bench")
                # The gateway's controller may run the marked restore too (it finishes marked
                # restores each tick, about every second): give it time to log one.
                took = max((o.get("seconds", 0.0) for o in rolled["data"]), default=0.0)
                deadline = time.time() + 2 * took + 5
                while len(mlops.restore_lines()) == seen and time.time() < deadline:
                    time.sleep(0.05)
                logged = time.time() if len(mlops.restore_lines()) > seen else None
                marks[scenario] = {
                    "quiet": quiet,
                    "deploy": (d0, d1),
                    "rollback": (r0, r1),
                    "controller_done": logged,
                    "migrated_revision": deployed["revision"],
                    "stable_revision": rolled["revision"],
                    "data": rolled["data"],
                }
                quiet = max(r1, logged or r1) + 1
            time.sleep(2)
        samples = json.loads(out.read_text())["samples"]
        snapshots, _, _ = mlops("snapshots", "bench")
    finally:
        mlops.stop()
    result["server_log"] = mlops.restore_lines()
    result["snapshot_rows"] = [
        {
            **{k: row.get(k) for k in ("id", "revision", "status", "size_bytes")},
            "restore": (row.get("details") or {}).get("restore") or {},
        }
        for row in snapshots
    ]
    result["n"] = len(samples)
    result["non_200"] = sum(1 for s in samples if s[2] != 200)
    for scenario, mark in marks.items():
        d0, d1 = mark["deploy"]
        r0, r1 = mark["rollback"]
        switched = min(
            (s[0] for s in samples if r0 <= s[0] and s[3] == mark["stable_revision"]),
            default=r0,
        )
        end = max(r1, mark["controller_done"] or r1)
        length = end - switched
        # Each baseline has the length of its window, or less when the idle time before the
        # call was shorter (it never reaches back into the call before).
        result[scenario] = {
            "deploy": answers(samples, d0, d1),
            "deploy_baseline": answers(samples, max(d0 - (d1 - d0), mark["quiet"]), d0),
            "restore": answers(samples, switched, end),
            "restore_baseline": answers(samples, max(r0 - length, d1 + 1), r0),
            "rollback_s": r1 - r0,
            "switch_after_s": switched - r0,
            "controller_after_s": end - r0 if mark["controller_done"] else None,
            "data": mark["data"],
            "migrated_revision": mark["migrated_revision"],
            "stable_revision": mark["stable_revision"],
        }
    return result


# -- the run -----------------------------------------------------------------------------------


DEFAULT_ROWS = {"sqlite": 1_000_000, "postgresql": 750_000}


def direct(backend: str, location: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """The snapshot drivers in-process, a separate reader process looking rows up."""
    result: dict[str, Any] = {}
    driver = SqliteSnapshot() if backend == "sqlite" else PostgresSnapshot()
    with reading(backend, location, rows, args.rate) as out:
        marks: dict[str, tuple[float, float]] = {}
        time.sleep(args.baseline_s)
        start = time.time()
        t0 = time.perf_counter()
        snap: Snapshot = driver.snapshot(location, WORK / "snaps", resource="features")
        result["snapshot_s"] = time.perf_counter() - t0
        marks["snapshot"] = (start, time.time())
        result["snapshot_bytes"] = snap.size_bytes
        for scenario in SCENARIOS:
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
    driver.delete(snap)
    reads = json.loads(out.read_text())
    samples = [tuple(s) for s in reads["samples"]]
    result["read_errors"] = reads["errors"]
    for name, (begin, end) in marks.items():
        result[f"{name}_reads"] = window(samples, begin, end)
        result[f"{name}_baseline"] = window(samples, begin - args.baseline_s, begin)
    return result


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    rows = args.rows or DEFAULT_ROWS[backend]
    result: dict[str, Any] = {"backend": backend, "rows": rows, "load": os.getloadavg()[0]}
    admin: psycopg.Connection[tuple[Any, ...]] | None = None
    database = ""
    if backend == "sqlite":
        path = WORK / "features.db"
        location = str(path)
        t0 = time.perf_counter()
        result["live_bytes"] = build_sqlite(path, rows, args.seed)
    else:
        database = f"mlops_bench_snap_{secrets.token_hex(4)}"
        admin = psycopg.connect(PG_SERVER + "postgres", autocommit=True)
        admin.execute(f'CREATE DATABASE "{database}"')
        location = PG_SERVER + database
        t0 = time.perf_counter()
        result["live_bytes"] = build_postgresql(location, rows, args.seed)
    result["build_s"] = time.perf_counter() - t0
    try:
        if "direct" in args.parts:
            result["direct"] = direct(backend, location, rows, args)
        if "gateway" in args.parts:
            resource = location if backend == "sqlite" else f"{location}?schema=public"
            result["gateway"] = through_gateway(backend, resource, rows, args)
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.close()
    return result


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\n== {r['backend']}: {r['rows']:,} rows, live table {mb(r['live_bytes'])} "
        f"(built in {r['build_s']:.1f} s), load {r['load']:.1f}"
    )
    if "direct" in r:
        report_direct(r["direct"], args.baseline_s)
    if "gateway" in r:
        report_gateway(r["gateway"])


def report_direct(r: dict[str, Any], baseline_s: float) -> None:
    print(f"snapshot: {r['snapshot_s']:.2f} s, {mb(r['snapshot_bytes'])} on disk")
    for scenario in SCENARIOS:
        print(
            f"restore ({scenario}): {r[f'{scenario}_restore_s']:.2f} s, "
            f"writes discarded: {r[f'{scenario}_writes']}"
        )
    print(f"{'point lookups':<26}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name in ("snapshot", *SCENARIOS):
        for label, stats in (
            (f"{name}: {baseline_s:g} s before", r[f"{name}_baseline"]),
            (f"{name}: during", r[f"{name}_reads"]),
        ):
            print(
                f"{label:<26}{stats['n']:>7}{stats['p50']:>9.2f}{stats['p99']:>9.2f}"
                f"{stats['max']:>9.2f}"
            )
    print(f"failed lookups: {r['read_errors']}")


def report_gateway(r: dict[str, Any]) -> None:
    what = "the key (lookup)" if r["requests"] == "lookup" else "the 8 features"
    print(
        f"gateway: {r['serve']}, POST /v1/models/bench:predict with {what}, "
        f"{r['rate']:g} req/s, latency from when each request was due"
    )
    for scenario in SCENARIOS:
        s = r[scenario]
        for outcome in s["data"]:
            print(
                f"{scenario}: revision {s['migrated_revision']} -> rollback to revision "
                f"{s['stable_revision']}: call {s['rollback_s']:.2f} s, switch seen after "
                f"{s['switch_after_s']:.2f} s; restore {outcome.get('status')} in "
                f"{outcome.get('seconds', float('nan')):.2f} s ({outcome.get('changes', '')})"
            )
        if s["controller_after_s"] is not None:
            print(
                f"{scenario}: the gateway's controller logged a restore of its own "
                f"{s['controller_after_s']:.2f} s after the rollback call started"
            )
    print(
        f"{'requests':<29}{'s':>6}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'non-200':>9}  revisions"
    )
    for scenario in SCENARIOS:
        s = r[scenario]
        for label, stats in (
            (f"{scenario}: before deploy", s["deploy_baseline"]),
            (f"{scenario}: deploy+migration", s["deploy"]),
            (f"{scenario}: before rollback", s["restore_baseline"]),
            (f"{scenario}: during restore", s["restore"]),
        ):
            print(
                f"{label:<29}{stats['seconds']:>6.2f}{stats['n']:>7}{stats['p50']:>9.2f}"
                f"{stats['p99']:>9.2f}{stats['max']:>9.2f}{stats['non_200']:>9}  "
                f"{','.join(str(v) for v in stats['revisions'])}"
            )
    print(f"non-200 answers: {r['non_200']} of {r['n']} requests")
    for row in r["snapshot_rows"]:
        restore = row["restore"]
        print(
            f"snapshot row {row['id']} (revision {row['revision']}): {row['status']}, "
            f"its last restore outcome: {restore.get('seconds', '-')} s, "
            f"{restore.get('changes') or restore.get('error') or '-'}"
        )
    print(f"restores the gateway's controller ran: {len(r['server_log'])}")
    for line in r["server_log"]:
        print(f"  {line}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        backend, location, rows, rate, stop, out = sys.argv[2:8]
        reader(backend, location, int(rows), float(rate), Path(stop), Path(out))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--loader":
        url, mode, rows, rate, stop, out, max_s = sys.argv[2:9]
        loader(url, mode, int(rows), float(rate), Path(stop), Path(out), float(max_s))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--parts", default="direct,gateway")
    parser.add_argument("--rate", type=float, default=500.0, help="direct lookups per second")
    parser.add_argument("--baseline-s", type=float, default=5.0)
    parser.add_argument("--gateway-rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--idle-s", type=float, default=20.0, help="serving between calls")
    parser.add_argument("--requests", choices=["lookup", "features"], default="lookup")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed to mlops serve, repeatable"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.parts = args.parts.split(",")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    began = time.perf_counter()
    print(
        f"rate={args.rate:g}/s baseline={args.baseline_s:g}s gateway-rate={args.gateway_rate:g}/s "
        f"idle={args.idle_s:g}s requests={args.requests} serve={args.serve_arg} "
        f"cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.1f} sqlite={sqlite3.sqlite_version}"
    )
    try:
        for backend in args.backends.split(","):
            report(run_backend(backend, args), args)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
