"""How fast a rollback made in another process moves live traffic, and whether any request fails.

A gateway (`mlops serve --workers 2`) serves a deployment under constant load from an async
client with 64 connections. A second process alternates `rollback` between two releases
(via the service layer, as `mlops rollback` does) and records when each commit returned.
For each switch, the lag is the time from the commit to the start of the last request that
was still served by the old revision. Prints the median, p99 and max lag and the number of
failed requests, for SQLite and PostgreSQL.

    .venv/bin/python bench/route_switch.py [--backends sqlite,postgresql] [--switches 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvloop
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import read_response  # noqa: E402
from tests.server import running_server  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6]


def make_models(folder: Path) -> tuple[Path, Path]:
    from tests.models import make_model_files

    folder.mkdir(parents=True, exist_ok=True)
    files = make_model_files(folder)
    return files["skops"], files["onnx"]


def switcher(store_url: str, home: str, switches: int, gap_s: float, out: Any, start: Any) -> None:
    from mlops.service import Service
    from mlops.settings import load_settings

    service = Service(load_settings(home=home, store_url=store_url))
    start.wait()
    commits = []
    for _ in range(switches):
        time.sleep(gap_s)
        result = service.rollback("api", reason="bench")
        commits.append((time.time(), result.revision))
    service.close()
    out.put(commits)


async def _connection(
    host: str,
    port: int,
    request: bytes,
    stop_at: float,
    records: list[tuple[float, float, int, int]],
) -> None:
    """One keep-alive connection sending requests back to back; a lean client keeps its own
    CPU use low, so the times it records are the times requests were really sent."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.time() < stop_at:
            t0 = time.time()
            writer.write(request)
            status, revision = await read_response(reader)
            records.append((t0, time.time(), status, revision))
    except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError):
        records.append((time.time(), time.time(), 0, -1))
    finally:
        writer.close()


async def load(url: str, connections: int, stop_at: float) -> list[tuple[float, float, int, int]]:
    """(start, end, status, revision) of every request until `stop_at`."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"instances": [ROW]}).encode()
    request = (
        f"POST /v1/models/api:predict HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    records: list[tuple[float, float, int, int]] = []
    await asyncio.gather(
        *(_connection(host, int(port), request, stop_at, records) for _ in range(connections))
    )
    return records


def lags(
    commits: list[tuple[float, int]], records: list[tuple[float, float, int, int]]
) -> list[float]:
    """Per switch: from the commit to the start of the last request the old revision served."""
    out = []
    ordered = sorted(records)
    if os.environ.get("SWITCH_DEBUG"):
        base = commits[0][0]
        print("commits", [(round(at - base, 3), rev) for at, rev in commits])
    for i, (at, revision) in enumerate(commits):
        until = commits[i + 1][0] if i + 1 < len(commits) else float("inf")
        # The gateway may swap before the committing process has even read its clock, so a
        # request just before the next commit can already show the next revision: only the
        # revision being replaced counts as stale.
        old = revision - 1
        stale = [
            start
            for start, _, status, rev in ordered
            if at <= start < until and rev == old and status == 200
        ]
        out.append(max(stale) - at if stale else 0.0)
    return out


def warm_up(store_url: str, home: Path, url: str, workers: int) -> None:
    """Switch once there and back, so every worker holds both versions (as keep_warm does)."""
    from mlops.client import Client

    with Client(store_url, home=home) as client:
        for _ in range(2):
            client.rollback("api", reason="warm-up")
            time.sleep(1.0)
    seen: dict[str, list[str]] = {}
    deadline = time.time() + 30
    while time.time() < deadline:
        status = httpx.get(url + "/v1/gateway").json()
        seen[status["worker"]] = status["loaded_versions"]
        if len(seen) == workers and all(len(v) == 2 for v in seen.values()):
            return
    raise RuntimeError(f"workers did not load both versions: {seen}")


def pg_url() -> tuple[str, str]:
    name = f"mlops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


def drop_pg(name: str) -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_backend(
    backend: str, switches: int, gap_s: float, connections: int, workers: int
) -> dict[str, Any]:
    from mlops.client import Client

    work = Path(tempfile.mkdtemp(prefix="mlops-switch-"))
    home = work / "home"
    pg_name = None
    if backend == "sqlite":
        store_url = f"sqlite:///{home / 'mlops.db'}"
    else:
        store_url, pg_name = pg_url()
    try:
        first, second = make_models(work / "models")
        with Client(store_url, home=home) as client:
            client.register("m", first)
            client.register("m", second)
            client.deploy("api", model="m:1")
            client.deploy("api", model="m:2")
        with running_server(
            store_url, home, "--workers", str(workers), "--no-log-predictions"
        ) as server:
            warm_up(store_url, home, server.url, workers)
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            start = ctx.Event()
            proc = ctx.Process(
                target=switcher, args=(store_url, str(home), switches, gap_s, out, start)
            )
            proc.start()
            duration = switches * gap_s + 3.0
            begin = time.time()
            start.set()
            records = uvloop.run(load(server.url, connections, begin + duration))
            commits = out.get(timeout=60)
            proc.join(30)
            if os.environ.get("SWITCH_DEBUG"):
                print(server.log.read_text()[-3000:])
        per_switch = lags(commits, records)
        if os.environ.get("SWITCH_DEBUG"):
            print("lags ms", [round(x * 1000, 1) for x in per_switch])
        switch_lags = sorted(per_switch)
        failed = sum(1 for _, _, status, _ in records if status != 200)
        return {
            "backend": backend,
            "switches": len(commits),
            "requests": len(records),
            "rps": len(records) / duration,
            "failed": failed,
            "lag_median_ms": statistics.median(switch_lags) * 1000,
            "lag_p99_ms": switch_lags[min(len(switch_lags) - 1, int(0.99 * len(switch_lags)))]
            * 1000,
            "lag_max_ms": switch_lags[-1] * 1000,
        }
    finally:
        if pg_name:
            drop_pg(pg_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--switches", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.3, help="seconds between switches")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("MLOPS_ACTOR", "bench")
    print(
        f"{'backend':<11} {'switches':>8} {'requests':>9} {'rps':>7} {'failed':>6} "
        f"{'lag p50 ms':>10} {'lag p99 ms':>10} {'lag max ms':>10}"
    )
    for backend in args.backends.split(","):
        r = run_backend(backend, args.switches, args.gap, args.connections, args.workers)
        print(
            f"{r['backend']:<11} {r['switches']:>8} {r['requests']:>9} {r['rps']:>7.0f} "
            f"{r['failed']:>6} "
            f"{r['lag_median_ms']:>10.1f} {r['lag_p99_ms']:>10.1f} {r['lag_max_ms']:>10.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
