"""Tail latency of `mlops serve` at low model cost, two code trees side by side: the same
store, model and load, the trees taking turns run by run (A, B, A, B, ...), so that a change's
effect on p99 is measured in one sitting.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/tail_latency.py --tree before=/tmp/before --tree after=. \
        [--model logreg] [--connections 16] [--duration 8] [--runs 3]

Each tree runs under this venv with its own `src` first on PYTHONPATH. Load: wrk, single-row
V1 predictions, 2 workers; one warm-up run per server start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from loadgen import run_load  # noqa: E402

from peers import (  # noqa: E402
    HOST,
    MAIN_PYTHON,
    WORK,
    free_port,
    predict_body,
    serve,
    train_models,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--model", choices=["logreg", "forest"], default="logreg")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree]
    files = train_models()
    model = files.logreg if args.model == "logreg" else files.forest
    body = predict_body(files.row)
    mlops = str(MAIN_PYTHON.parent / "mlops")
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    for run in range(args.runs):
        for name, tree in trees:
            home = WORK / f"tail-{name}"
            if home.exists():
                shutil.rmtree(home)
            home.mkdir(parents=True)
            env = {
                "MLOPS_HOME": str(home),
                "MLOPS_STORE": f"sqlite:///{home / 'mlops.db'}",
                "PYTHONPATH": str(tree.resolve() / "src"),
            }
            for step in (
                ["register", "m", str(model), "--trust"],
                ["deploy", "m", "--model", "m:1"],
            ):
                subprocess.run(
                    [mlops, *step], env={**os.environ, **env}, check=True, capture_output=True
                )
            port = free_port()
            cmd = [mlops, "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"]
            url = f"http://{HOST}:{port}/v1/models/m:predict"
            with serve(f"tail-{name}", cmd, url, body, env=env):
                run_load(url, body, args.connections, 2.0)  # warm-up
                r = run_load(url, body, args.connections, args.duration)
            results[name].append(r)
            print(
                f"run {run + 1} {name:10} rps {r['rps']:8.0f}  p50 {r['p50_ms']:6.2f} ms  "
                f"p90 {r['p90_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms  max {r['max_ms']:7.1f} ms",
                flush=True,
            )
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        print(
            f"{name:10} median of {len(runs)}: rps {rps:.0f}, "
            f"p50 {statistics.median(r['p50_ms'] for r in runs):.2f} ms, "
            f"p99 {statistics.median(r['p99_ms'] for r in runs):.2f} ms"
        )


if __name__ == "__main__":
    main()
