"""Processes for the snapshot tests: a restore to kill, and a reader that measures its reads.

    python -m tests.integration.snapshot_worker restore DRIVER LOCATION SNAPSHOT
        [--renames-then-die N]
    python -m tests.integration.snapshot_worker read DRIVER LOCATION KEYS STOP_FILE OUT_JSON

`restore` prints "go" just before the restore starts and "done" after it returns.
`read` looks up the given keys round-robin (SQL: `SELECT key, a FROM features WHERE key = ?`;
directory: reads `features/KEY.txt`) until STOP_FILE exists, and writes each read's start
time, duration, key and answer, and every error, to OUT_JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from mlops.snapshots import driver_for
from mlops.snapshots.driver import load_snapshot


def restore(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {}
    if args.driver == "directory" and args.renames_then_die is not None:
        options["exchange"] = False
        calls = [0]
        real_rename = os.rename

        def rename_then_die(src: Any, dst: Any) -> None:
            real_rename(src, dst)
            calls[0] += 1
            if calls[0] >= args.renames_then_die:
                os.kill(os.getpid(), signal.SIGKILL)

        os.rename = rename_then_die  # type: ignore[assignment]
    driver = driver_for(args.driver, **options)
    snapshot = load_snapshot(args.snapshot)
    print("go", flush=True)
    driver.restore(snapshot, args.location)
    print("done", flush=True)


def read(args: argparse.Namespace) -> None:
    keys = [int(k) for k in args.keys.split(",")]
    stop = Path(args.stop_file)
    reads: list[tuple[float, float, int, Any]] = []
    errors: list[str] = []
    lookup = _lookup(args.driver, args.location)
    i = 0
    print("reading", flush=True)
    while not stop.exists():
        key = keys[i % len(keys)]
        i += 1
        started = time.time()
        t0 = time.perf_counter()
        try:
            answer = lookup(key)
        except Exception as exc:  # every failure is what the test looks for
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        reads.append((started, time.perf_counter() - t0, key, answer))
    Path(args.out).write_text(json.dumps({"reads": reads, "errors": errors}))


def _lookup(driver: str, location: str) -> Any:
    if driver == "sqlite":
        conn = sqlite3.connect(location, timeout=30, isolation_level=None)

        def sqlite_lookup(key: int) -> Any:
            row = conn.execute("SELECT key, a FROM features WHERE key = ?", (key,)).fetchone()
            return None if row is None else row[1]

        return sqlite_lookup
    if driver == "postgresql":
        import psycopg

        from mlops.snapshots.postgresql import split_location

        url, schema = split_location(location)
        pg = psycopg.connect(url, autocommit=True)
        pg.execute("SELECT set_config('search_path', %s, false)", (schema,))

        def pg_lookup(key: int) -> Any:
            row = pg.execute(
                "SELECT key, a FROM features WHERE key = %s", (key,), prepare=True
            ).fetchone()
            return None if row is None else row[1]

        return pg_lookup
    root = Path(location)

    def file_lookup(key: int) -> Any:
        return (root / "features" / f"{key}.txt").read_text()

    return file_lookup


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("restore")
    r.add_argument("driver")
    r.add_argument("location")
    r.add_argument("snapshot")
    r.add_argument("--renames-then-die", type=int, default=None)
    q = sub.add_parser("read")
    q.add_argument("driver")
    q.add_argument("location")
    q.add_argument("keys")
    q.add_argument("stop_file")
    q.add_argument("out")
    args = parser.parse_args(argv)
    restore(args) if args.command == "restore" else read(args)


if __name__ == "__main__":
    main(sys.argv[1:])
