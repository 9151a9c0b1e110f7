"""mlops's gateway against a bare Starlette endpoint and against its peers, in one run.

- Overhead: a 20-feature LogisticRegression, 2 workers each, 16 connections: mlops's
  throughput as a share of a bare Starlette + uvicorn endpoint serving the same model
  (target: at least 85 %).
- Peers: a 100-tree RandomForest (20 features), single-row requests at 16 and 64
  connections: mlops (2 workers) against `mlflow models serve` and `bentoml serve` with
  their default settings (target: at least 5x the throughput, and a lower p99).

mlops runs as a user starts it (`mlops serve --workers 2`, default settings: micro-batching
on, every prediction logged for delayed labels, measurements flushed to the SQLite store).
The peers, their venvs and the load generator come from bench/peers.py and bench/loadgen.py
(wrk with one thread when installed). Every target is measured in turn, each connection
count after a warm-up and on a quiet machine, 3 runs of 15 s each; medians are printed.

    .venv/bin/python bench/gateway_throughput.py [--duration 15] [--repeats 3]
        [--targets mlops-logreg,starlette-logreg,mlops-forest,mlflow,bentoml]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402

MLOPS = peers.REPO / ".venv" / "bin" / "mlops"
TARGETS = ("mlops-logreg", "starlette-logreg", "mlops-forest", "mlflow", "bentoml")


@contextlib.contextmanager
def mlops_server(model: Path, name: str, port: int, body: bytes, workers: int) -> Iterator[Any]:
    """A fresh store holding `model` as deployment `name`, served by `mlops serve`."""
    from mlops.client import Client

    home = peers.WORK / f"mlops-home-{name}-{int(time.time())}"
    store = f"sqlite:///{home / 'mlops.db'}"
    with Client(store, home=home) as client:
        client.register(name, model, trust=True)
        client.deploy(name, model=f"{name}:1")
    cmd = [
        str(MLOPS),
        "serve",
        "--host",
        peers.HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    url = f"http://{peers.HOST}:{port}/v1/models/{name}:predict"
    env = {"MLOPS_HOME": str(home), "MLOPS_STORE": store}
    with peers.serve(
        f"mlops-{name}", cmd, url, body, env=env, check=peers._has_predictions
    ) as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    targets = args.targets.split(",")
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")

    peers.WORK.mkdir(parents=True, exist_ok=True)
    venvs = peers.ensure_peer_venvs() if {"mlflow", "bentoml"} & set(targets) else {}
    files = peers.train_models()
    body = peers.predict_body(files.row)
    rows: list[dict[str, Any]] = []
    for target in targets:
        port = peers.free_port()
        conns: tuple[int, ...] = (16, 64)
        if target == "mlops-logreg":
            ctx = mlops_server(files.logreg, "logreg", port, body, args.workers)
            labels = {"server": f"mlops serve ({args.workers} workers)", "model": "logreg"}
            conns = (16,)
        elif target == "starlette-logreg":
            ctx = peers.starlette_server(files.logreg, port, body, workers=args.workers)
            labels = {"server": f"bare starlette ({args.workers} workers)", "model": "logreg"}
            conns = (16,)
        elif target == "mlops-forest":
            ctx = mlops_server(files.forest, "forest", port, body, args.workers)
            labels = {"server": f"mlops serve ({args.workers} workers)", "model": "forest"}
        elif target == "mlflow":
            ctx = peers.mlflow_server(files.mlflow_forest, port, venvs["mlflow"], body)
            labels = {"server": "mlflow models serve (defaults)", "model": "forest"}
        else:
            ctx = peers.bentoml_server(files.forest, port, venvs["bentoml"], body)
            labels = {"server": "bentoml serve (defaults)", "model": "forest"}
        print(f"== {target}", flush=True)
        with ctx as server:
            rows += peers.measure(
                server.url,
                body,
                connections=conns,
                duration_s=args.duration,
                repeats=args.repeats,
                warmup_s=args.warmup,
                labels=labels,
                server_pid=server.proc.pid,
            )

    print()
    print(peers.format_table(rows))
    print()
    summarize(rows)
    out = peers.WORK / "gateway_throughput.json"
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "cpus": os.cpu_count(),
                "rows": [{k: v for k, v in r.items() if k != "runs"} for r in rows],
            },
            indent=2,
        )
    )
    print(f"\n(rows saved to {out})")


def summarize(rows: list[dict[str, Any]]) -> None:
    def find(server_prefix: str, model: str, conns: int) -> dict[str, Any] | None:
        for row in rows:
            if (
                row["server"].startswith(server_prefix)
                and row["model"] == model
                and row["connections"] == conns
            ):
                return row
        return None

    ours, bare = find("mlops", "logreg", 16), find("bare", "logreg", 16)
    if ours and bare:
        share = ours["rps"] / bare["rps"]
        verdict = "ok" if share >= 0.85 else "MISSED"
        print(
            f"overhead, logreg @16: mlops {ours['rps']:.0f} rps = {share:.0%} of bare starlette "
            f"{bare['rps']:.0f} rps (target >= 85%)  {verdict}"
        )
    for conns in (16, 64):
        ours = find("mlops", "forest", conns)
        if not ours:
            continue
        for peer in ("mlflow", "bentoml"):
            other = find(peer, "forest", conns)
            if not other:
                continue
            ratio = ours["rps"] / other["rps"] if other["rps"] else float("inf")
            lower_p99 = ours["p99_ms"] < other["p99_ms"]
            verdict = "ok" if ratio >= 5 and lower_p99 else "MISSED"
            print(
                f"forest @{conns}: mlops {ours['rps']:.0f} rps p99 {ours['p99_ms']:.1f} ms "
                f"vs {peer} {other['rps']:.0f} rps p99 {other['p99_ms']:.1f} ms: "
                f"{ratio:.1f}x (target >= 5x, lower p99)  {verdict}"
            )


if __name__ == "__main__":
    main()
