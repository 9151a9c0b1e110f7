"""Across hosts, on the many-hosts harness (tests/hosts.py: gateways, controllers, a PostgreSQL
and HAProxy in network namespaces of this machine; needs root, haproxy, nftables, iproute2):

  lag       how long a route change takes to reach every gateway host: a split written to the
            store, then each host's /v1/gateway polled until it shows the new change number
            (target: p99 <= 100 ms)
  failover  the requests that fail when a gateway host is killed under load, for several
            HAProxy check intervals, with and without `retries 1` + `option redispatch`
  writes    the store's writes per gateway under load: commits and rows per second in
            PostgreSQL's own statistics, from which the gateways one PostgreSQL serves follow

    .venv/bin/python bench/hosts.py [lag|failover|writes|all] [--switches 50]

Prints a table per part and writes bench/.work/hosts-*.json. Load stays inside the harness's
namespaces (addresses 10.231.0.x that exist only there).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.hosts import Cluster, Load, have_tools  # noqa: E402
from tests.models import make_model_files, training_data  # noqa: E402

from mlops import Client  # noqa: E402

WORK = REPO / "bench" / ".work"
ROW = training_data()[0][:1].tolist()


def _seq(cluster: Cluster, http: httpx.Client, name: str) -> int:
    return int(http.get(f"{cluster.gateway_url(name)}/v1/gateway", timeout=5).json()["seq"])


def lag(cluster: Cluster, client: Client, switches: int) -> dict[str, Any]:
    """Milliseconds from a committed split to each host serving it: one thread per host, in
    the client host's namespace with a kept-alive connection, polls its /v1/gateway every
    ~1 ms for the change number the commit made."""
    client.deploy("lag", model="lr:1")
    client.deploy("lag", model="lr:2")
    cluster_wait_seq(cluster, client)
    per_host: dict[str, list[float]] = {name: [] for name in cluster.gateway_names}
    want = [0]
    committed = [0.0]
    go = {name: threading.Event() for name in cluster.gateway_names}
    done = {name: threading.Event() for name in cluster.gateway_names}
    stop = threading.Event()

    def watch(name: str) -> None:
        with cluster.inside(), httpx.Client() as http:
            _seq(cluster, http, name)  # the connection, opened before the clock starts
            while True:
                go[name].wait()
                go[name].clear()
                if stop.is_set():
                    return
                while _seq(cluster, http, name) < want[0]:
                    time.sleep(0.001)
                per_host[name].append((time.monotonic() - committed[0]) * 1000)
                done[name].set()

    threads = [threading.Thread(target=watch, args=(n,)) for n in cluster.gateway_names]
    for thread in threads:
        thread.start()
    for i in range(switches):
        with client._service.store.read() as tx:
            want[0] = tx.change_seq() + 1
        client.set_traffic("lag", {1: 50, 2: 50} if i % 2 == 0 else {2: 100})
        committed[0] = time.monotonic()
        for name in cluster.gateway_names:
            go[name].set()
        for name in cluster.gateway_names:
            done[name].wait(30)
            done[name].clear()
    stop.set()
    for name in cluster.gateway_names:
        go[name].set()
    for thread in threads:
        thread.join(10)
    every = [ms for values in per_host.values() for ms in values]
    return {
        "switches": switches,
        "p50_ms": round(float(np.percentile(every, 50)), 1),
        "p99_ms": round(float(np.percentile(every, 99)), 1),
        "max_ms": round(max(every), 1),
        "per_host_p99_ms": {n: round(float(np.percentile(v, 99)), 1) for n, v in per_host.items()},
    }


def cluster_wait_seq(cluster: Cluster, client: Client) -> None:
    with client._service.store.read() as tx:
        want = tx.change_seq()
    with cluster.inside(), httpx.Client() as http:
        for name in cluster.gateway_names:
            while _seq(cluster, http, name) < want:
                time.sleep(0.01)


def failover(cluster: Cluster, client: Client, connections: int = 6) -> list[dict[str, Any]]:
    client.deploy("steady", model="lr:1")
    cluster_wait_seq(cluster, client)
    rows = []
    for inter_ms, retries in ((250, 1), (500, 1), (1000, 1), (2000, 1), (500, 0), (2000, 0)):
        cluster.kill("lb")
        cluster.start_balancer(inter_ms=inter_ms, fall=2, rise=2, retries=retries)
        cluster.wait_balanced()
        with Load(cluster, "steady", ROW, connections) as load:
            time.sleep(2)
            killed = time.monotonic()
            cluster.kill("gw3")
            time.sleep(2 * inter_ms / 1000 + 3)
            window = [(at, status) for at, status, _ in load.seen if at >= killed]
        failed = [at - killed for at, status in window if status != 200]
        rows.append(
            {
                "inter_ms": inter_ms,
                "fall": 2,
                "retries_redispatch": bool(retries),
                "requests_after_kill": len(window),
                "failed": len(failed),
                "last_failure_after_s": round(max(failed), 2) if failed else None,
            }
        )
        print(rows[-1], flush=True)
        cluster.start_gateway("gw3")
        cluster.wait_gateways(["gw3"])
    return rows


def writes(cluster: Cluster, client: Client, duration_s: float = 20) -> dict[str, Any]:
    """Commits and inserted rows per second in PostgreSQL while the balancer spreads load over
    every gateway, with and without a rollout being judged (measurements flush faster then)."""
    client.deploy("writes", model="lr:1")
    cluster_wait_seq(cluster, client)
    out: dict[str, Any] = {}
    for phase in ("steady", "rollout"):
        if phase == "rollout":
            client.deploy(
                "writes",
                model="lr:2",
                rollout={"steps": [{"set_weight": 50}, {"pause": {}}]},
                strategy="canary",
            )
            cluster_wait_seq(cluster, client)
        with Load(cluster, "writes", ROW, 8) as load:
            time.sleep(3)
            before, t0, n0 = _db_stats(client), time.monotonic(), len(load.seen)
            time.sleep(duration_s)
            after, t1, n1 = _db_stats(client), time.monotonic(), len(load.seen)
        seconds = t1 - t0
        gateways = len(cluster.gateway_names)
        commits = (after["xact_commit"] - before["xact_commit"]) / seconds
        inserted = (after["tup_inserted"] - before["tup_inserted"]) / seconds
        out[phase] = {
            "requests_per_s": round((n1 - n0) / seconds),
            "commits_per_s": round(commits, 1),
            "commits_per_s_per_gateway": round(commits / gateways, 1),
            "rows_inserted_per_s": round(inserted),
            "rows_inserted_per_s_per_gateway": round(inserted / gateways),
        }
        print(phase, out[phase], flush=True)
    client.abort("writes")
    return out


def _db_stats(client: Client) -> dict[str, int]:
    with client._service.store.read() as tx:
        row = tx.conn.exec_driver_sql(
            "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = 'mlops'"
        ).one()
    return {"xact_commit": int(row[0]), "tup_inserted": int(row[1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "part", nargs="?", default="all", choices=["lag", "failover", "writes", "all"]
    )
    parser.add_argument("--switches", type=int, default=50)
    args = parser.parse_args()
    missing = have_tools()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="mlops-hosts-") as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        files = make_model_files(root / "models")
        with Cluster(root / "cluster") as cluster:
            cluster.wait_gateways()
            cluster.wait_balanced()
            with Client(cluster.local_store_url, home=root / "admin") as client:
                client.register("lr", files["joblib"], trust=True)
                client.register("lr", files["joblib2"], trust=True)
                if args.part in ("lag", "all"):
                    result["lag"] = lag(cluster, client, args.switches)
                    print("lag", result["lag"], flush=True)
                if args.part in ("writes", "all"):
                    result["writes"] = writes(cluster, client)
                if args.part in ("failover", "all"):
                    result["failover"] = failover(cluster, client)
    out = WORK / f"hosts-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
