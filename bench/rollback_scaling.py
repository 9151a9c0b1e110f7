"""Whether the cost of a rollback grows with history: 10 to 1,000,000 releases and versions.

For each backend and size N, a store holds one model with N versions and one deployment with
N releases (release r pins version r as its `model` component and points at r-1 as its
previous stable release), with the `release_pins` and `events` rows a real store would have.
The store's schema comes from `Store(url)` (the Alembic migrations); the rows are bulk-loaded
(SQLite: executemany in one transaction; PostgreSQL: COPY) and the database is analyzed.

Then three rollbacks are timed through the service layer, as `mlops rollback` runs them:

    previous   service.rollback("dep")               the previous stable release
    version    service.rollback("dep", version=k)    k drawn at random in 1..N
    revision   service.rollback("dep", revision=R)   R drawn at random in 1..N

Each is repeated `--repeat` times after a warm-up. The stores of all sizes stay open and the
timed operations are interleaved one by one: each pass runs every (size, operation) pair once,
in a random order, so bursts of load from other processes fall on every size alike.
Prints the median, p90 and minimum wall time per (backend, N, operation), with the median
CPU time of this process (the part of the cost spent in Python, SQLAlchemy and, for SQLite,
the database engine), the ratio of the median at the largest N to the one at the smallest,
and the query plans of the rollback path at the largest N.

    .venv/bin/python bench/rollback_scaling.py [--backends sqlite,postgresql]
        [--sizes 10,1000,100000,1000000] [--repeat 200] [--warmup 5]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from mlops.service import Service
from mlops.settings import Settings
from mlops.store import Store
from mlops.store import schema as t
from mlops.store.store import (
    deployment_stmt,
    pin_stmt,
    release_components_stmt,
    release_stmt,
    version_stmt,
)

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DEPLOYMENT = "dep"
MODEL = "m"
COMPONENT = "model"
OPS = ("previous", "version", "revision")
BATCH = 20_000
"""Rows per COPY write: the loaders stream, never holding a table in memory."""

SQLITE_TS = "2025-01-01 00:00:00.000000"
PG_TS = "2025-01-01 00:00:00+00"

Row = tuple[Any, ...]


# the rows


@dataclass(frozen=True)
class TableFill:
    name: str
    columns: tuple[str, ...]
    row: Callable[[int], Row]
    """The row for release / version number r (1..N)."""
    count: int


def sha(r: int) -> str:
    return hashlib.sha256(str(r).encode()).hexdigest()


def changes_json(r: int) -> str:
    before = f"{MODEL}:{r - 1}" if r > 1 else None
    return json.dumps([{"component": COMPONENT, "from": before, "to": f"{MODEL}:{r}"}])


def fills(n: int, ts: str) -> list[TableFill]:
    """Every table's rows for size n, in foreign-key order. Ids are 1-based and dense."""

    def prev(r: int) -> int | None:
        return r - 1 if r > 1 else None

    # fmt: off
    return [
        TableFill(
            "models",
            ("id", "name", "latest_version", "description", "created_at"),
            lambda _r: (1, MODEL, n, None, ts),
            1,
        ),
        TableFill(
            "deployments",
            ("id", "name", "latest_revision", "stable_revision", "candidate_revision",
             "phase", "data_policy", "config", "routes", "created_at", "updated_at"),
            lambda _r: (1, DEPLOYMENT, n, n, None, "idle", "restore", "{}", None, ts, ts),
            1,
        ),
        TableFill(
            "model_versions",
            ("id", "model_id", "version", "flavor", "artifact_sha256", "artifact_kind",
             "size_bytes", "signature", "tags", "source", "trusted", "status",
             "created_at", "created_by"),
            lambda r: (r, 1, r, "sklearn", sha(r), "file", 4096 + r, "{}", "{}", None, 0,
                       "ready", ts, "bench"),
            n,
        ),
        TableFill(
            "events",
            ("id", "deployment_id", "action", "trigger", "actor", "reason",
             "from_revision", "to_revision", "details", "at"),
            lambda r: (r, 1, "deploy", "manual", "bench", None, prev(r), r,
                       '{"changes": ' + changes_json(r) + "}", ts),
            n,
        ),
        TableFill(
            "releases",
            ("deployment_id", "revision", "previous_stable", "source_revision", "status",
             "strategy", "config", "changes", "event_id", "created_at", "created_by"),
            lambda r: (1, r, prev(r), None, "stable" if r == n else "superseded",
                       "direct", "{}", changes_json(r), r, ts, "bench"),
            n,
        ),
        TableFill(
            "release_components",
            ("deployment_id", "revision", "component", "model_version_id"),
            lambda r: (1, r, COMPONENT, r),
            n,
        ),
        TableFill(
            "release_pins",
            ("deployment_id", "component", "model_version_id", "revision"),
            lambda r: (1, COMPONENT, r, r),
            n,
        ),
    ]
    # fmt: on


# the loaders


def load_sqlite(path: Path, n: int) -> None:
    """executemany over generators inside one transaction, with durability off while loading."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA foreign_keys=OFF")
        con.execute("PRAGMA temp_store=MEMORY")
        con.execute("PRAGMA cache_size=-262144")  # 256 MiB
        con.execute("BEGIN")
        for fill in fills(n, SQLITE_TS):
            marks = ", ".join("?" * len(fill.columns))
            sql = f"INSERT INTO {fill.name} ({', '.join(fill.columns)}) VALUES ({marks})"
            con.executemany(sql, map(fill.row, range(1, fill.count + 1)))
        con.execute("COMMIT")
        con.execute("ANALYZE")
        con.execute("PRAGMA journal_mode=WAL")  # as the store runs it
    finally:
        con.close()


def _copy_text(value: Any) -> str:
    # COPY's text format; no value here holds a tab, newline or backslash.
    return "\\N" if value is None else str(value)


def _copy_chunks(fill: TableFill) -> Iterator[bytes]:
    for start in range(1, fill.count + 1, BATCH):
        stop = min(start + BATCH, fill.count + 1)
        yield "".join(
            "\t".join(map(_copy_text, fill.row(r))) + "\n" for r in range(start, stop)
        ).encode()


def load_postgresql(store: Store, n: int) -> None:
    """COPY through the raw DBAPI (psycopg) connection, foreign-key triggers off, then
    VACUUM ANALYZE (as autovacuum would have done in a store that grew over months)."""
    raw = store.engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        with conn.cursor() as cur:
            # The rows are consistent by construction; skipping the per-row FK triggers
            # makes the load several times faster. Needs a superuser, as `postgres` is.
            cur.execute("SET session_replication_role = replica")
            for fill in fills(n, PG_TS):
                columns = ", ".join(f'"{c}"' for c in fill.columns)
                with cur.copy(f"COPY {fill.name} ({columns}) FROM STDIN") as copy:
                    for chunk in _copy_chunks(fill):
                        copy.write(chunk)
            cur.execute("SET session_replication_role = DEFAULT")
            # The ids were given explicitly: move the sequences past them.
            for table, last in (
                ("models", 1),
                ("deployments", 1),
                ("model_versions", n),
                ("events", n),
            ):
                cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", (table, last))
        raw.commit()
    finally:
        raw.close()
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn2:
        conn2.exec_driver_sql("VACUUM ANALYZE")


def pg_admin(server: str) -> Any:
    return create_engine(server + "postgres", isolation_level="AUTOCOMMIT")


def create_pg_database(server: str, name: str) -> str:
    admin = pg_admin(server)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return server + name


def drop_pg_database(server: str, name: str) -> None:
    admin = pg_admin(server)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# the timed operations


@dataclass
class Case:
    backend: str
    n: int
    store: Store
    service: Service
    served: int
    """The version of MODEL the stable release serves now."""
    rng: random.Random
    fill_s: float
    times: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})

    def draw(self) -> int:
        """A version / revision in 1..N other than the one served (which would change nothing)."""
        while True:
            k = self.rng.randint(1, self.n)
            if k != self.served:
                return k

    def run(self, op: str) -> tuple[float, float]:
        """Run one rollback; its wall time and this thread's CPU time, in seconds."""
        version = self.draw() if op == "version" else None
        revision = self.draw() if op == "revision" else None
        cpu = time.thread_time()
        started = time.perf_counter()
        result = self.service.rollback(
            DEPLOYMENT, version=version, revision=revision, reason="bench"
        )
        elapsed = time.perf_counter() - started
        cpu = time.thread_time() - cpu
        if not result.changed:
            raise RuntimeError(f"{self.backend} N={self.n} {op}: the rollback changed nothing")
        self.served = result.components[COMPONENT].version
        return elapsed, cpu


def open_case(backend: str, n: int, work: Path, url: str, seed: int) -> Case:
    began = time.perf_counter()
    store = Store(url)  # creates the schema through the Alembic migrations
    if backend == "sqlite":
        store.dispose()
        database = make_url(url).database
        assert database
        load_sqlite(Path(database), n)
        store = Store(url)
    else:
        load_postgresql(store, n)
    fill_s = time.perf_counter() - began
    home = work / f"home-{backend}-{n}"
    settings = Settings(home=home, store_url=url, trust_pickles=False, actor="bench")
    service = Service(settings, store=store)
    status = service.status(DEPLOYMENT)[0]
    assert status.revision == n, status
    assert status.components[COMPONENT].version == n, status
    return Case(backend, n, store, service, n, random.Random(f"{seed}-{backend}-{n}"), fill_s)


def measure(cases: list[Case], repeat: int, warmup: int, seed: int) -> None:
    """`warmup` untimed rollbacks per (size, op), then `repeat` passes over all pairs."""
    for case in cases:
        for op in OPS:
            for _ in range(warmup):
                case.run(op)
    order = random.Random(seed)
    pairs = [(case, op) for case in cases for op in OPS]
    for _ in range(repeat):
        order.shuffle(pairs)
        gc.collect()
        for case, op in pairs:
            wall, cpu = case.run(op)
            case.times[op].append(wall)
            case.cpu[op].append(cpu)


# the report


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def report(cases: list[Case]) -> None:
    print()
    print(
        f"{'backend':<11} {'N':>9} {'fill s':>7}  {'op':<9} {'median ms':>9} {'p90 ms':>7} "
        f"{'min ms':>7} {'cpu ms':>7}"
    )
    for case in cases:
        for op in OPS:
            ms = [s * 1000 for s in case.times[op]]
            cpu = statistics.median(case.cpu[op]) * 1000
            print(
                f"{case.backend:<11} {case.n:>9,} {case.fill_s:>7.1f}  {op:<9} "
                f"{statistics.median(ms):>9.2f} {quantile(ms, 0.9):>7.2f} {min(ms):>7.2f} "
                f"{cpu:>7.2f}"
            )
    print()
    print("ratio median(largest N) / median(smallest N), target <= 1.5")
    for backend in dict.fromkeys(case.backend for case in cases):
        mine = sorted((c for c in cases if c.backend == backend), key=lambda c: c.n)
        small, large = mine[0], mine[-1]
        if small is large:
            print(f"  {backend:<11} one size only: no ratio")
            continue
        for op in OPS:
            ratio = statistics.median(large.times[op]) / statistics.median(small.times[op])
            verdict = "ok" if ratio <= 1.5 else "MISSED"
            print(f"  {backend:<11} {op:<9} N={large.n:,}/N={small.n:,}: {ratio:.2f}x  {verdict}")


def plans(case: Case) -> None:
    """The query plans of the rollback path's statements, at this case's size."""
    store = case.store
    with store.read() as tx:
        dep = tx.deployment(DEPLOYMENT)
        assert dep is not None
        assert dep.stable_revision is not None
        k = case.n // 2 or 1
        version = tx.version(MODEL, k)
        assert version is not None
        event_id = tx.conn.execute(
            select(t.releases.c.event_id).where(
                t.releases.c.deployment_id == dep.id, t.releases.c.revision == k
            )
        ).scalar_one()
    statements = {
        "deployment by name (deployment_stmt)": deployment_stmt(DEPLOYMENT),
        f"stable release {dep.stable_revision} (release_stmt)": release_stmt(
            dep.id, dep.stable_revision
        ),
        f"release {k}'s components (release_components_stmt)": release_components_stmt(dep.id, [k]),
        f"version {MODEL}:{k} (version_stmt)": version_stmt(MODEL, k),
        f"pin of {MODEL}:{k} (pin_stmt)": pin_stmt(dep.id, COMPONENT, version.id),
        f"release {k} (release_stmt)": release_stmt(dep.id, k),
        "release's event by id (Tx.releases)": select(t.events).where(
            t.events.c.id.in_([event_id])
        ),
    }
    print()
    print(f"query plans, {case.backend}, N={case.n:,}")
    for title, stmt in statements.items():
        print(f"  -- {title}")
        for line in store.explain(stmt):
            print(f"     {line}")
    if store.dialect == "postgresql":
        # `deployments` and `models` hold one row each here, so the planner rightly reads
        # their one heap page; with scans disallowed it shows the unique index it would use.
        print("  -- deployment by name (deployment_stmt), with enable_seqscan=off")
        for line in explain_without_seqscan(store, deployment_stmt(DEPLOYMENT)):
            print(f"     {line}")


def explain_without_seqscan(store: Store, stmt: Any) -> list[str]:
    compiled = stmt.compile(store.engine, compile_kwargs={"literal_binds": True})
    with store.engine.connect() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled}").fetchall()
        conn.rollback()
    return [" | ".join(str(v) for v in row) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="10,1000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=200, help="timed rollbacks per N and op")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rollbacks per N and op")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pg-server", default=PG_SERVER, help="server URL, ending in /")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    unknown = set(backends) - {"sqlite", "postgresql"}
    if unknown or not sizes or min(sizes) < 2 or args.repeat < 1:
        parser.error("backends: sqlite, postgresql; sizes: integers >= 2; repeat >= 1")
    print(
        f"rollback scaling: backends={','.join(backends)} sizes={','.join(map(str, sizes))} "
        f"repeat={args.repeat} warmup={args.warmup} seed={args.seed}",
        flush=True,
    )

    all_cases: list[Case] = []
    for backend in backends:
        work = Path(tempfile.mkdtemp(prefix=f"mlops-rollback-{backend}-"))
        databases: list[str] = []
        cases: list[Case] = []
        try:
            for n in sizes:
                if backend == "sqlite":
                    url = f"sqlite:///{work / f'store-{n}.db'}"
                else:
                    name = f"mlops_bench_{secrets.token_hex(4)}_{n}"
                    databases.append(name)
                    url = create_pg_database(args.pg_server, name)
                cases.append(open_case(backend, n, work, url, args.seed))
                print(f"  {backend} N={n:,}: filled in {cases[-1].fill_s:.1f} s", flush=True)
            began = time.perf_counter()
            measure(cases, args.repeat, args.warmup, args.seed)
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"  {backend}: timed in {time.perf_counter() - began:.1f} s "
                f"(load average {load} on {os.cpu_count()} CPUs)",
                flush=True,
            )
            plans(cases[-1])
            all_cases.extend(cases)
        finally:
            for case in cases:
                case.service.close()
            for name in databases:
                drop_pg_database(args.pg_server, name)
            shutil.rmtree(work, ignore_errors=True)
    report(all_cases)


if __name__ == "__main__":
    main()
