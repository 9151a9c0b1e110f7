"""What mlops adds in front of a model on an existing server (the `remote` flavor): MLServer
1.7 with its adaptive batching on serves the benchmark's logistic regression and 100-tree
forest; each is measured over V2 REST straight at MLServer, then through `mlops serve` (2
workers), where the model is a remote version that the gateway calls over REST or gRPC. The
same one-row V2 REST request, the same connection counts, side by side in one run.

    .venv/bin/python bench/remote_overhead.py --duration 8 --repeats 3 --warmup 2

Prints a table (rps and latency percentiles, medians of the runs) and writes the JSON to
bench/.work/remote-overhead-*.json."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

HOST = peers.HOST


def mlops_in_front(name: str, remote: dict[str, Any], port: int, body: bytes) -> Any:
    """`mlops serve` on a store of its own whose deployment `model` is the remote version."""
    home = peers.WORK / f"mlops-remote-{name}"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    spec = home / "remote.json"
    spec.write_text(json.dumps({"remote": remote}))
    env = {
        "MLOPS_HOME": str(home),
        "MLOPS_STORE": f"sqlite:///{home / 'mlops.db'}",
        "MLOPS_REMOTE_HOSTS": HOST,
    }
    mlops = str(peers.MAIN_PYTHON.parent / "mlops")
    for args in (["register", "model", str(spec)], ["deploy", "model", "--model", "model:1"]):
        subprocess.run([mlops, *args], env={**os.environ, **env}, check=True, capture_output=True)
    cmd = [mlops, "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"]
    url = f"http://{HOST}:{port}/v2/models/model/infer"
    return peers.serve(f"mlops-remote-{name}", cmd, url, body, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="logreg,forest")
    parser.add_argument("--connections", type=peers._ints, default=[16, 64])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args(argv)

    venv = peers.ensure_peer_venvs(["mlserver"])["mlserver"]
    files = peers.train_models()
    rows: list[dict[str, Any]] = []
    for model_name in [m for m in args.models.split(",") if m]:
        model = files.logreg if model_name == "logreg" else files.forest
        body = peers.v2_body(files.row)
        port, grpc_port = peers.free_port(), peers.free_port()
        direct = f"http://{HOST}:{port}/v2/models/model/infer"
        width = len(files.row)
        with peers.mlserver_server(
            model, port, grpc_port, venv, body, batching=True, declare=width
        ) as mlserver:
            targets: list[tuple[str, str | None]] = [("MLServer 1.7 (batching), direct", None)]
            for transport, url in (
                ("rest", f"http://{HOST}:{port}"),
                ("grpc", f"grpc://{HOST}:{grpc_port}"),
            ):
                targets.append((f"mlops -> MLServer over {transport}", url))
            for label, remote_url in targets:
                print(f"== {model_name}: {label}", flush=True)
                if remote_url is None:
                    ctx: Any = contextlib.nullcontext(None)
                else:
                    remote = {"url": remote_url, "model": "model", "timeout_s": 10}
                    name = f"{model_name}-{remote_url.split(':')[0]}"
                    ctx = mlops_in_front(name, remote, peers.free_port(), body)
                with ctx as gateway:
                    # In front, MLServer works for the gateway: its CPU is no outside load, so
                    # the machine is checked quiet before, not during, the runs.
                    if gateway is not None and not args.no_wait:
                        peers.wait_for_quiet()
                    rows += peers.measure(
                        direct if gateway is None else gateway.url,
                        body,
                        connections=args.connections,
                        duration_s=args.duration,
                        repeats=args.repeats,
                        warmup_s=args.warmup,
                        labels={"model": model_name, "path": label},
                        server_pid=mlserver.proc.pid if gateway is None else None,
                        quiet=gateway is None and not args.no_wait,
                    )
    out = peers.WORK / f"remote-overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print()
    print("| model | path | connections | rps | p50 ms | p99 ms | errors+non-2xx |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['model']} | {row['path']} | {row['connections']} | {row['rps']:,.0f} | "
            f"{row['p50_ms']} | {row['p99_ms']} | {row['errors'] + row['non_2xx']} |"
        )
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
