"""What the dashboard costs, on a real `mlops serve` with an SQLite store:

1. the time from a store change (a traffic split written by another process's `Client`) to
   the open deployment page in Chromium showing it, pushed by server-sent events;
2. the overview's and a deployment page's server time with 10 deployments and with 200
   deployments holding 10,000 revisions of history between them, each deployment with five
   minutes of measurements (one flush every 5 s), side by side in one run: median ms, ratio.

    .venv/bin/python bench/dashboard.py [--changes 20] [--requests 30]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.models import make_model_files  # noqa: E402
from tests.server import Server, running_server  # noqa: E402

from mlops import Client  # noqa: E402
from mlops.service.base import utcnow  # noqa: E402
from mlops.store.measurements import MeasurementRecord  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def seeded(deployments: int, revisions: int) -> Iterator[tuple[Client, str, Path, str]]:
    """A store with `deployments` deployments and `revisions` releases between them, five
    minutes of measurements for each, and an admin token."""
    with tempfile.TemporaryDirectory(prefix="mlops-bench-ui-") as tmp:
        home = Path(tmp) / "home"
        (home / "files").mkdir(parents=True)
        files = make_model_files(home / "files")
        url = f"sqlite:///{home / 'mlops.db'}"
        with Client(url, home=home) as client:
            client.register("m", files["skops"])
            client.register("m", files["onnx"])
            per = max(1, revisions // deployments)
            for d in range(deployments):
                for r in range(per):
                    client.deploy(f"d{d:03}", model=f"m:{1 + r % 2}")
            measure(client, deployments)
            token = client._service.create_token("bench", role="admin").secret
            yield client, url, home, token


def measure(client: Client, deployments: int) -> None:
    store = client._service.store
    now = utcnow()
    with store.write() as tx:
        deps = tx.deployments(limit=None)
        records = [
            MeasurementRecord(
                deployment_id=dep.id,
                revision=dep.stable_revision or 1,
                role="live",
                worker="w1",
                started_at=now - timedelta(seconds=s + 5),
                ended_at=now - timedelta(seconds=s),
                requests=50,
                errors={"model": 1} if s % 60 == 0 else {},
                latency={"40": 45, "60": 5},
                predictions={"1": 30, "0": 20},
            )
            for dep in deps
            for s in range(0, 300, 5)
        ]
        tx.add_measurements(records)


def signed_in(server: Server, token: str) -> httpx.Client:
    http = httpx.Client(base_url=server.url, timeout=60)
    assert http.post("/ui/login", data={"token": token}).status_code == 303
    return http


def page_times(http: httpx.Client, path: str, n: int, pause_s: float = 0.0) -> list[float]:
    """Server times of `n` requests; with `pause_s` past the worker's shared-read TTL, each
    one reads the store again (cold)."""
    http.get(path)  # warm
    out = []
    for _ in range(n):
        time.sleep(pause_s)
        t0 = time.perf_counter()
        answer = http.get(path)
        out.append((time.perf_counter() - t0) * 1000)
        assert answer.status_code == 200, answer.text[:300]
    return out


def server_times(n: int) -> None:
    results = {}
    for label, deployments, revisions in (
        ("10 deployments", 10, 200),
        ("200 deployments", 200, 10_000),
    ):
        t0 = time.perf_counter()
        with seeded(deployments, revisions) as (_, url, home, token):
            seeded_s = time.perf_counter() - t0
            with running_server(url, home, "--no-gateway", "--no-controller") as server:
                http = signed_in(server, token)
                overview = page_times(http, "/ui/", n)
                cold = page_times(http, "/ui/", max(3, n // 3), pause_s=0.6)
                rows = len(re.findall(r'<th scope="row"><a href="/ui/d/', http.get("/ui/").text))
                assert rows == deployments, rows
                deployment = page_times(http, "/ui/d/d000", n)
                history = page_times(http, "/ui/d/d000/history", n)
                http.close()
        results[label] = (overview, deployment, history, cold)
        print(
            f"{label:16} ({revisions:,} revisions, seeded in {seeded_s:.0f} s): overview median "
            f"{statistics.median(overview):.1f} ms ({rows} rows), deployment page "
            f"{statistics.median(deployment):.1f} ms, history {statistics.median(history):.1f} ms; "
            f"overview read afresh (shared reads expired) {statistics.median(cold):.1f} ms"
        )
    small, big = results["10 deployments"], results["200 deployments"]
    for k, name in enumerate(("overview", "deployment page", "history page", "overview afresh")):
        ratio = statistics.median(big[k]) / statistics.median(small[k])
        verdict = "ok" if ratio <= 2 else "MISSED"
        print(f"{name:16} 200 vs 10 deployments: {ratio:.2f}x (target <= 2x) {verdict}")


def change_lag(changes: int) -> None:
    from playwright.sync_api import sync_playwright

    with (
        seeded(1, 2) as (client, url, home, token),
        running_server(url, home, "--no-gateway", "--no-controller") as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(base_url=server.url).new_page()
        page.goto("/ui/login?next=/ui/")
        page.get_by_label("API token or identity-provider JWT").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/ui/$"))
        page.locator("#live-status", has_text="Live").wait_for()
        lags = []
        for i in range(changes):
            share = 10 + i % 80
            t0 = time.perf_counter()
            client.set_traffic("d000", {2: 100 - share, 1: share}, force=True)
            page.locator("#deployments", has_text=f"r1: {share} %").wait_for(timeout=10_000)
            lags.append((time.perf_counter() - t0) * 1000)
        browser.close()
    lags.sort()
    p95 = lags[max(0, round(0.95 * len(lags)) - 1)]
    verdict = "ok" if max(lags) <= 1000 else "MISSED"
    print(
        f"store change -> page: median {statistics.median(lags):.0f} ms, p95 {p95:.0f} ms, "
        f"max {max(lags):.0f} ms over {changes} changes (target <= 1000 ms) {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    change_lag(args.changes)
    server_times(args.requests)


if __name__ == "__main__":
    main()
