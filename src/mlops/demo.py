"""`mlops demo`: the whole release loop on the embedded store, with nothing else to start.

It trains three fraud models, registers them, serves them (`mlops serve`, with its
controller), drives synthetic traffic, rolls out a bad model by canary and shows the
automatic rollback with its reason, rolls out a good one to completion, then runs
`mlops rollback --version 1`, and prints the timeline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from mlops.client import Client

console = Console(highlight=False)

CANARY = {
    "strategy": "canary",
    "steps": [
        {"set_weight": 10},
        {"pause": {"duration": "4s", "requests": 100}},
        {"set_weight": 50},
        {"pause": {"duration": "4s", "requests": 200}},
    ],
    "progress_deadline": "60s",
}


def _train(folder: Path) -> tuple[dict[str, Path], Any]:
    """A good linear model, a bad one (a log transform that breaks on negative inputs), and a
    better forest; saved as a user would save them."""
    import joblib
    import numpy as np
    import skops.io
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    folder.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(n_samples=3_000, n_features=8, n_informative=5, random_state=7)
    good = LogisticRegression(max_iter=500).fit(x, y)
    bad = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500))
    bad.fit(np.abs(x), y)  # trained on the wrong data; NaN on half of real inputs
    forest = RandomForestClassifier(n_estimators=30, max_depth=8, random_state=7).fit(x, y)
    files = {
        "good": folder / "fraud-logreg.joblib",
        "bad": folder / "fraud-log1p.skops",
        "better": folder / "fraud-forest.skops",
    }
    joblib.dump(good, files["good"])
    skops.io.dump(bad, files["bad"])
    skops.io.dump(forest, files["better"])
    return files, x


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Traffic:
    """Synthetic clients: single-row requests at a steady pace, on a few connections."""

    def __init__(self, url: str, rows: Any, rate: float = 150.0) -> None:
        self.url = url
        self.rows = rows
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self.by_revision: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(3)
        ]

    def _run(self, offset: int) -> None:
        i = offset
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                row = self.rows[i % len(self.rows)].tolist()
                i += 3
                try:
                    r = client.post("/v1/models/fraud-api:predict", json={"instances": [row]})
                    rev = r.headers.get("x-release-revision", "?")
                    self.by_revision[rev] = self.by_revision.get(rev, 0) + 1
                    self.failed += r.status_code != 200
                except httpx.HTTPError:
                    self.failed += 1
                self.sent += 1
                time.sleep(3 / self.rate)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


def _wait_for_rollout(client: Client, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        status = client.status("fraud-api")[0]
        rollout = status.rollout
        if rollout is None:
            return
        line = (
            f"  step {rollout['step']}/{rollout['steps']}, candidate at {rollout['weight']:g}%, "
            f"verdict {rollout['outcome']}"
        )
        if line != last:
            console.print(line, style="dim")
            last = line
        time.sleep(0.5)
    raise TimeoutError("the rollout did not end in time")


def run_demo(home: Path | None = None) -> None:
    started = time.monotonic()
    folder = Path(home) if home else Path(tempfile.mkdtemp(prefix="mlops-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{folder / 'mlops.db'}"
    console.print(f"Demo store: SQLite under {folder}\n")
    files, x = _train(folder / "files")
    with Client(store, home=folder) as client:
        _register(client, files)
        port = _free_port()
        env = {**os.environ, "MLOPS_HOME": str(folder), "MLOPS_STORE": store}
        server = subprocess.Popen(
            [sys.executable, "-m", "mlops", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        traffic = Traffic(url, x)
        try:
            _wait_until_live(url, server)
            console.print(f"Serving on {url}; sending traffic\n")
            traffic.start()
            time.sleep(2)
            _releases(client)
            time.sleep(1.5)
        finally:
            traffic.stop()
            server.terminate()
            server.wait(timeout=30)
        _timeline(client)
    console.print(
        f"\n{traffic.sent} requests, {traffic.failed} failed (the bad canary's share before its "
        f"rollback), by revision: {dict(sorted(traffic.by_revision.items()))}"
    )
    console.print(
        f"Done in {time.monotonic() - started:.1f} s. Look around with: "
        f"MLOPS_HOME={folder} mlops history fraud-api"
    )


def _register(client: Client, files: dict[str, Path]) -> None:
    client.register("fraud", files["good"], trust=True, tags={"kind": "logistic regression"})
    client.register("fraud", files["bad"], tags={"kind": "log1p + logistic regression"})
    client.register("fraud", files["better"], trust=True, tags={"kind": "random forest"})
    console.print(
        "Registered fraud:1 (good), fraud:2 (bad: breaks on negative inputs), fraud:3 (better)"
    )
    client.deploy("fraud-api", model="fraud:1", reason="first release")


def _releases(client: Client) -> None:
    """A bad canary rolled back by analysis, a good one promoted, then a manual rollback."""
    console.print("[bold]mlops deploy fraud-api --model fraud:2 --strategy canary[/]")
    client.deploy("fraud-api", model="fraud:2", rollout=CANARY, reason="new features")
    _wait_for_rollout(client)
    rollback = next(e for e in client.events("fraud-api", limit=5) if e.action == "rollback")
    console.print(f"[red]Rolled back automatically[/] ({rollback.trigger}): {rollback.reason}")
    console.print(f"  quarantined: {', '.join(rollback.details.get('quarantined', []))}\n")
    console.print("[bold]mlops deploy fraud-api --model fraud:3 --strategy canary[/]")
    client.deploy("fraud-api", model="fraud:3", rollout=CANARY, reason="forest")
    _wait_for_rollout(client)
    status = client.status("fraud-api")[0]
    console.print(
        f"[green]Promoted[/]: revision {status.revision} serves "
        f"fraud:{status.components['model'].version}\n"
    )
    console.print("[bold]mlops rollback --version 1[/]")
    result = client.rollback(version=1, reason="back to the linear model")
    console.print(
        f"Rolled back to revision {result.revision} (restores revision {result.source_revision})"
    )


def _wait_until_live(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlops serve exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("mlops serve did not start")


def _timeline(client: Client) -> None:
    events = list(reversed(client.events("fraud-api", limit=50)))
    first = events[0].at if events else None
    table = Table(
        "T+S", "ACTION", "TRIGGER", "FROM", "TO", "REASON", title="timeline: mlops events"
    )
    for event in events:
        offset = (event.at - first).total_seconds() if first else 0.0
        table.add_row(
            f"{offset:.1f}",
            event.action,
            event.trigger,
            str(event.from_revision or "-"),
            str(event.to_revision or "-"),
            (event.reason or "-")[:90],
        )
    console.print()
    console.print(table)
