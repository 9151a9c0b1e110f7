"""How fast the `mlops` command answers: the median wall time of `mlops --help`, a remote
`mlops status` (against `mlops serve --no-gateway` on loopback, with a token), a local
`mlops status` and a local `mlops rollback` (SQLite store, two releases), and a shell
completion (Tab), each run 20 times in turn, beside `python -c pass` in the same run. Run it
on a quiet machine.

    .venv/bin/python bench/cli_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.control_api import store  # noqa: E402
from tests.server import MLOPS, running_server  # noqa: E402

TAB = {"_MLOPS_COMPLETE": "complete_bash", "COMP_WORDS": "mlops rollback --ve", "COMP_CWORD": "2"}
"""What bash asks when Tab is pressed after `mlops rollback --ve`."""
TARGETS = {"--help": 0.3, "remote status": 0.4, "local status": 0.8, "local rollback": 0.8}


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with store() as (client, url, home):
        secret = client._service.create_token("bench", role="operator").secret
        bare = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
        bare["MLOPS_CREDENTIALS"] = str(home / "none.json")
        local = {**bare, "MLOPS_HOME": str(home), "MLOPS_STORE": url}
        with running_server(url, home, "--no-gateway") as server:
            remote = {**bare, "MLOPS_URL": server.url, "MLOPS_TOKEN": secret}
            cases = {
                "python -c pass": ([sys.executable, "-c", "pass"], bare),
                "--help": ([MLOPS, "--help"], bare),
                "completion (Tab)": ([MLOPS], {**bare, **TAB}),
                "remote status": ([MLOPS, "status"], remote),
                "local status": ([MLOPS, "status"], local),
                "local rollback": ([MLOPS, "rollback", "api"], local),
            }
            times: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.runs):
                for name, (argv, env) in cases.items():
                    times[name].append(timed(argv, env))
    for name, found in times.items():
        median = statistics.median(found)
        target = TARGETS.get(name)
        verdict = "" if target is None else f"  (target <= {target} s) "
        verdict += "" if target is None else ("ok" if median <= target else "MISSED")
        print(f"{name:17} median {median:.3f} s, max {max(found):.3f} s{verdict}")


if __name__ == "__main__":
    main()
