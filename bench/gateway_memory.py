"""Resident memory of each gateway worker, empty and with 10 loaded versions of a 100-tree forest.

Ten versions (forests trained with different seeds, 20 features) are registered and deployed
as ten deployments; `mlops serve --workers 2` loads them all. Each worker reports its RSS on
`GET /v1/gateway`; requests are spread until both workers have answered.

    .venv/bin/python bench/gateway_memory.py [--versions 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.server import running_server  # noqa: E402


def forest_files(folder: Path, count: int) -> list[Path]:
    import skops.io
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    folder.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(n_samples=5_000, n_features=20, n_informative=10, random_state=0)
    paths = []
    for seed in range(count):
        path = folder / f"forest-{seed}.skops"
        skops.io.dump(RandomForestClassifier(n_estimators=100, random_state=seed).fit(x, y), path)
        paths.append(path)
    return paths


def worker_rss(url: str, workers: int) -> dict[str, tuple[int, int]]:
    """worker -> (rss bytes, loaded versions), asking until every worker answered."""
    seen: dict[str, tuple[int, int]] = {}
    deadline = time.time() + 30
    while len(seen) < workers and time.time() < deadline:
        # a new connection each time, so the kernel spreads them over the workers
        status = httpx.get(url + "/v1/gateway", headers={"connection": "close"}).json()
        seen[status["worker"]] = (status["rss_bytes"], len(status["loaded_versions"]))
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from mlops.client import Client

    work = Path(tempfile.mkdtemp(prefix="mlops-memory-"))
    home = work / "home"
    store_url = f"sqlite:///{home / 'mlops.db'}"
    paths = forest_files(work / "models", args.versions)
    sizes = [p.stat().st_size for p in paths]
    with running_server(store_url, home, "--workers", str(args.workers)) as server:
        empty = worker_rss(server.url, args.workers)
        with Client(store_url, home=home) as client:
            for i, path in enumerate(paths, start=1):
                client.register("forest", path, trust=True)
                client.deploy(f"forest-{i}", model=f"forest:{i}")
        deadline = time.time() + 120
        while time.time() < deadline:
            loaded = worker_rss(server.url, args.workers)
            if len(loaded) == args.workers and all(n == args.versions for _, n in loaded.values()):
                break
            time.sleep(0.5)
    print(f"forest: 100 trees, 20 features; skops file {sum(sizes) / len(sizes) / 1e6:.1f} MB each")
    print(
        f"{'worker':<24} {'RSS empty MB':>12} {'RSS loaded MB':>13} {'versions':>8} "
        f"{'per version MB':>14}"
    )
    for worker, (rss, count) in sorted(loaded.items()):
        before = empty.get(worker, (0, 0))[0]
        per = (rss - before) / count / 1e6 if count else 0.0
        print(f"{worker:<24} {before / 1e6:>12.1f} {rss / 1e6:>13.1f} {count:>8} {per:>14.1f}")


if __name__ == "__main__":
    main()
