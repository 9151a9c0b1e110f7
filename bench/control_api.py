"""What the control plane costs, on a real `mlops serve --workers 2` with an SQLite store:

1. a rollback over the API (`POST /api/v1/deployments/api/rollback`, admin token) against the
   same rollback on the store directly (`Client.rollback` in this process): median ms, ratio;
2. gateway throughput with token-checked predictions (`--predict-token`, a `predict` token)
   against open ones, the same single-row requests (bearer header included) from wrk, the two
   servers side by side taking turns under load: rps and the loss;
3. the time from a token's revocation (its commit) to the last request it got accepted on
   any worker, under load from 8 connections spread over both workers.

    .venv/bin/python bench/control_api.py [--rollbacks 40] [--duration 4] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import run_load  # noqa: E402
from bench.peers import descendants, load_with_accounting, process_jiffies  # noqa: E402
from tests.models import make_model_files  # noqa: E402
from tests.server import Server, running_server  # noqa: E402

from mlops import Client  # noqa: E402

ROW = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6]
BODY = json.dumps({"instances": [ROW]}).encode()


@contextmanager
def store() -> Iterator[tuple[Client, str, Path]]:
    with tempfile.TemporaryDirectory(prefix="mlops-bench-api-") as tmp:
        home = Path(tmp) / "home"
        (home / "files").mkdir(parents=True)
        files = make_model_files(home / "files")
        url = f"sqlite:///{home / 'mlops.db'}"
        with Client(url, home=home) as client:
            client.register("m", files["skops"])
            client.register("m", files["onnx"])
            client.deploy("api", model="m:1")
            client.deploy("api", model="m:2")
            yield client, url, home


def rollbacks(client: Client, server: Server, admin: str, n: int) -> None:
    over_api, direct = [], []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        headers = {"authorization": f"Bearer {admin}"}
        for _ in range(n):
            started = time.perf_counter()
            response = http.post("/api/v1/deployments/api/rollback", json={}, headers=headers)
            over_api.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 201, response.text
            started = time.perf_counter()
            client.rollback("api")
            direct.append((time.perf_counter() - started) * 1000)
    a, d = statistics.median(over_api), statistics.median(direct)
    print(f"rollback over the API: median {a:.1f} ms (p90 {_p90(over_api):.1f}); ", end="")
    print(f"on the store directly: median {d:.1f} ms (p90 {_p90(direct):.1f}); ratio {a / d:.2f}")


def _p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9)]


BALANCED = 0.6
"""A turn counts when the less busy worker used at least this share of the busier one's CPU."""


def throughput(url: str, home: Path, caller: str, duration: float, repeats: int) -> None:
    """Both servers run side by side (the idle one costs nothing) and take turns under load,
    with new connections each turn. Two workers accept from one socket, and now and then one
    of them takes nearly all 16 connections and the rate halves, whatever the server: such
    turns are shown but left out of the comparison, which would otherwise measure where the
    kernel put the connections. Beside the rate, the workers' CPU time per request."""
    headers = {"authorization": f"Bearer {caller}"}
    runs: dict[str, list[tuple[float, float, float]]] = {"open": [], "token": []}
    with (
        running_server(url, home, "--workers", "2") as opened_server,
        running_server(url, home, "--workers", "2", "--predict-token") as token_server,
    ):
        servers = {"open": opened_server, "token": token_server}
        for server in servers.values():
            run_load(f"{server.url}/v1/models/api:predict", BODY, 16, 2, headers=headers)
        for repeat in range(repeats):
            for kind in ("open", "token") if repeat % 2 == 0 else ("token", "open"):
                runs[kind].append(_turn(servers[kind], duration, headers))
    balanced = {k: [(r, c) for r, c, b in v if b >= BALANCED] for k, v in runs.items()}
    for kind, label in (("open", "open:         "), ("token", "token-checked:")):
        shown = ", ".join(f"{r:.0f}{'' if b >= BALANCED else '*'}" for r, _, b in runs[kind])
        rates, costs = [r for r, _ in balanced[kind]], [c for _, c in balanced[kind]]
        print(
            f"predictions, {label} runs {shown} rps; balanced median "
            f"{statistics.median(rates):.0f}; worker CPU per request median "
            f"{statistics.median(costs):.0f} µs"
        )
    print(f"(* one worker took most connections: {BALANCED:.0%} balance or less, left out)")
    opened, checked = (statistics.median(r for r, _ in balanced[k]) for k in ("open", "token"))
    cost = statistics.median(c for _, c in balanced["token"]) / statistics.median(
        c for _, c in balanced["open"]
    )
    loss = (1 - checked / opened) * 100
    verdict = "ok" if loss <= 5 else "MISSED"
    print(f"token checks cost {loss:.1f} % of throughput (target <= 5 %)  {verdict}; ", end="")
    print(f"CPU per request x{cost:.3f}")


def _turn(server: Server, duration: float, headers: dict[str, str]) -> tuple[float, float, float]:
    """One turn of load: rps, workers' CPU µs per request, and how evenly the workers worked."""
    workers = [p for p in descendants(server.process.pid) if _is_worker(p)]
    before = [process_jiffies(w) for w in workers]
    result = load_with_accounting(
        f"{server.url}/v1/models/api:predict",
        BODY,
        16,
        duration,
        server.process.pid,
        headers=headers,
    )
    assert result["non_2xx"] == 0, result
    used = [process_jiffies(w) - b for w, b in zip(workers, before, strict=True)]
    balance = min(used) / max(used) if used and max(used) > 0 else 0.0
    return result["rps"], result["server_cores"] / result["rps"] * 1e6, balance


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def hammer(url: str, secret: str, stop: threading.Event, last_ok: list[float]) -> None:
    headers = {"authorization": f"Bearer {secret}"}
    while not stop.is_set():
        # A new connection each time: the kernel spreads them over both workers.
        response = httpx.get(f"{url}/api/v1/models", headers=headers)
        if response.status_code == 200:
            last_ok.append(time.monotonic())


def revocations(client: Client, server: Server, trials: int) -> None:
    lags = []
    for trial in range(trials):
        secret = client._service.create_token(f"gone-{trial}", role="viewer").secret
        last_ok: list[float] = []
        stop = threading.Event()
        threads = [
            threading.Thread(target=hammer, args=(server.url, secret, stop, last_ok))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)
        client._service.revoke_token(f"gone-{trial}")
        revoked = time.monotonic()
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join()
        lags.append(max(last_ok) - revoked if last_ok else 0.0)
    worst = max(lags)
    print(
        f"revocation to the last accepted request: {_list([x * 1000 for x in lags])} ms; "
        f"max {worst * 1000:.0f} ms (target <= 1000 ms)  {'ok' if worst <= 1 else 'MISSED'}"
    )


def only_throughput(args: argparse.Namespace) -> None:
    with store() as (client, url, home):
        caller = client._service.create_token("caller", role=None, scopes=["predict"]).secret
        throughput(url, home, caller, args.duration, args.repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollbacks", type=int, default=40)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--revocations", type=int, default=5)
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    if args.throughput_only:
        only_throughput(args)
        return
    with store() as (client, url, home):
        admin = client._service.create_token("admin", role="admin").secret
        caller = client._service.create_token("caller", role=None, scopes=["predict"]).secret
        with running_server(url, home, "--workers", "2") as server:
            rollbacks(client, server, admin, args.rollbacks)
            revocations(client, server, args.revocations)
        if not args.no_throughput:
            throughput(url, home, caller, args.duration, args.repeats)


if __name__ == "__main__":
    main()
