"""Time to roll back a bad candidate, live: gateway, controller and load on loopback.

`mlops serve` (embedded SQLite store, its own controller) answers a steady open-loop load of
`--rate` requests per second. Each trial deploys a candidate by canary at `--weight` percent
(then a long pause) and records every request's start, status and serving revision. It reports
per trial:

- first: the start of the candidate's first request (time zero);
- event: when the controller committed the rollback (its event's time), from first;
- last: the start of the last request the candidate served, from first ("off traffic");
- after swap: candidate requests that started more than `--grace` seconds after the rollback
  was seen committed (this process polls the store every 10 ms; the gateway's watcher every
  20 ms).

Two kinds of candidate: one that passes its readiness check, then fails every live request,
and one that answers correctly but with its p99 about three times the stable release's (each
call sleeps twice the stable p99, measured first under the same load).

    .venv/bin/python bench/time_to_rollback.py [--trials 10] [--rate 200] [--weight 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import read_response  # noqa: E402
from tests.server import running_server  # noqa: E402

Record = tuple[float, float, int, int]
"""(start, end, HTTP status, serving revision) of one request."""


async def _open_loop(
    url: str,
    rate: float,
    rows: list[list[float]],
    stop: threading.Event,
    records: list[Record],
    connections: int = 16,
) -> None:
    """Requests at fixed times (`rate` per second over `connections` keep-alive connections),
    whatever the answers take: a slow candidate does not slow the load down."""
    host, port = url.removeprefix("http://").split(":")
    interval = connections / rate

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        due = time.time() + offset / rate
        i = offset
        try:
            while not stop.is_set():
                await asyncio.sleep(max(0.0, due - time.time()))
                due += interval
                body = json.dumps({"instances": [rows[i % len(rows)]]}).encode()
                i += connections
                t0 = time.time()
                head = (
                    f"POST /v1/models/api:predict HTTP/1.1\r\nHost: {host}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                status, revision = await read_response(reader)
                records.append((t0, time.time(), status, revision))
        finally:
            writer.close()

    await asyncio.gather(*(connection(k) for k in range(connections)))


class Load:
    def __init__(self, url: str, rate: float, rows: list[list[float]]) -> None:
        self.records: list[Record] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=lambda: uvloop.run(_open_loop(url, rate, rows, self._stop, self.records)),
            daemon=True,
        )

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def _spec(weight: float) -> dict[str, Any]:
    return {
        "strategy": "canary",
        "steps": [{"set_weight": weight}, {"pause": {"duration": "5m"}}],
        "progress_deadline": "10m",
    }


def _trial(client: Any, load: Load, ref: str, weight: float, grace_s: float) -> dict[str, Any]:
    before = len(load.records)
    deployed = client.deploy("api", model=ref, rollout=_spec(weight), reason="bench")
    candidate = deployed.revision
    deadline = time.time() + 60
    while time.time() < deadline:
        if client.status("api")[0].rollout is None:
            visible = time.time()  # the rollback's commit, seen from another process
            break
        time.sleep(0.01)
    else:
        raise TimeoutError(f"candidate {ref} was not rolled back within 60 s")
    time.sleep(1.0)  # let in-flight requests finish and the stable release take the load back
    ended = next(e for e in client.events("api", limit=10) if e.action == "rollback")
    seen = [r for r in load.records[before:] if r[3] == candidate]
    if not seen:
        raise RuntimeError(f"candidate {ref} served no request")
    first = min(r[0] for r in seen)
    last = max(r[0] for r in seen)
    committed = ended.at.timestamp()
    return {
        "ref": ref,
        "requests": len(seen),
        "failed": sum(1 for r in seen if r[2] != 200),
        "event_s": committed - first,
        "off_s": last - first,
        "after_swap": sum(1 for r in seen if r[0] > visible + grace_s),
        "reason": f"{ended.trigger}: {ended.reason}",
    }


def _p99_ms(records: list[Record]) -> float:
    times = [(end - start) * 1000 for start, end, status, _ in records if status == 200]
    return float(np.percentile(times, 99))


def run(args: argparse.Namespace) -> None:
    import joblib
    from tests.models import DelayedModel, make_model_files, save_special, training_data

    from mlops.client import Client

    work = Path(tempfile.mkdtemp(prefix="mlops-ttr-"))
    home = work / "home"
    store_url = f"sqlite:///{home / 'mlops.db'}"
    files = make_model_files(work)
    special = save_special(work)
    x, _ = training_data()
    rows = x.tolist()
    with Client(store_url, home=home) as client:
        client.register("m", files["joblib"], trust=True)
        client.deploy("api", model="m:1")
        with running_server(store_url, home) as server, Load(server.url, args.rate, rows) as load:
            time.sleep(args.warmup)
            baseline = list(load.records)
            stable_p99 = _p99_ms(baseline)
            rate = len(baseline) / args.warmup
            print(
                f"stable: {rate:.0f} requests/s offered, p99 {stable_p99:.1f} ms; "
                f"candidate weight {args.weight:g}%",
                flush=True,
            )
            kinds: dict[str, list[dict[str, Any]]] = {"failing": [], "slower": []}
            delay_s = args.slowdown * stable_p99 / 1000
            slow_file = work / "slower.joblib"
            joblib.dump(DelayedModel(joblib.load(files["joblib"]), delay_s), slow_file)
            for kind in kinds:
                source = special["fails_live"] if kind == "failing" else slow_file
                for _ in range(args.trials):
                    version = client.register("m", source, trust=True, tags={"trial": kind})
                    result = _trial(client, load, f"m:{version.version}", args.weight, args.grace)
                    kinds[kind].append(result)
                    print(
                        f"  {kind:<8} {result['ref']:<6} "
                        f"candidate requests {result['requests']:>4} "
                        f"(failed {result['failed']:>3}); rollback committed "
                        f"{result['event_s']:.2f} s, last request {result['off_s']:.2f} s after "
                        f"its first; after swap {result['after_swap']}",
                        flush=True,
                    )
                    time.sleep(args.gap)
            slow_seen = [r for r in load.records if r[2] == 200 and r[3] > 1]
            slow_p99 = _p99_ms(slow_seen)
            print(
                f"slower candidate (sleeps {delay_s * 1000:.1f} ms a call): p99 {slow_p99:.1f} ms "
                f"vs stable {stable_p99:.1f} ms ({slow_p99 / stable_p99:.1f}x)"
            )
        for kind, results in kinds.items():
            off = [r["off_s"] for r in results]
            event = [r["event_s"] for r in results]
            print(
                f"{kind}: off traffic after its first request: median "
                f"{statistics.median(off):.2f} s (min {min(off):.2f}, max {max(off):.2f}); "
                f"rollback committed median "
                f"{statistics.median(event):.2f} s; requests after the swap "
                f"{sum(r['after_swap'] for r in results)}; reason: {results[0]['reason']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per kind of candidate")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--weight", type=float, default=10.0, help="candidate's share, percent")
    parser.add_argument(
        "--slowdown", type=float, default=2.0, help="the slower candidate sleeps this x stable p99"
    )
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of stable baseline")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds between trials")
    parser.add_argument(
        "--grace", type=float, default=0.05, help="seconds after the commit for the route swap"
    )
    args = parser.parse_args()
    os.environ.setdefault("MLOPS_ACTOR", "bench")
    run(args)


if __name__ == "__main__":
    main()
