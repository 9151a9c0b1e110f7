"""`mlops demo`: the registry, deploys and rollbacks on the embedded store, end to end."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from mlops.client import Client

T = TypeVar("T")
console = Console(highlight=False)


def _train(folder: Path) -> dict[str, tuple[Path, float]]:
    """Three small fraud models, saved as a user would save them, with their holdout accuracy."""
    import joblib
    import numpy as np
    import skops.io
    from sklearn.datasets import make_classification
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = make_classification(n_samples=2_000, n_features=20, n_informative=8, random_state=7)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=7)
    models = {
        "logreg.joblib": LogisticRegression(max_iter=500),
        "always-zero.joblib": DummyClassifier(strategy="constant", constant=0),
        "forest.skops": RandomForestClassifier(n_estimators=50, random_state=7),
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, model in models.items():
        model.fit(x_train, y_train)
        path = folder / name
        if name.endswith(".skops"):
            skops.io.dump(model, path)
        else:
            joblib.dump(model, path)
        out[name] = (path, float(np.mean(model.predict(x_test) == y_test)))
    np.savetxt(folder / "sample.csv", x_test[:5], delimiter=",")
    return out


def run_demo(home: Path | None = None) -> None:
    started = time.perf_counter()
    folder = Path(home) if home else Path(tempfile.mkdtemp(prefix="mlops-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    timeline: list[tuple[float, str, str, float]] = []

    def step(what: str, fn: Callable[[], T], describe: Callable[[T], str]) -> T:
        t0 = time.perf_counter()
        result = fn()
        took = (time.perf_counter() - t0) * 1000
        timeline.append((t0 - started, what, describe(result), took))
        console.print(f"[bold]{what}[/]: {describe(result)}  [dim]({took:.1f} ms)[/]")
        return result

    console.print(f"Demo store: sqlite under {folder} (MLOPS_HOME)\n")
    files = step(
        "train",
        lambda: _train(folder / "files"),
        lambda m: ", ".join(f"{n} acc={a:.3f}" for n, (_, a) in m.items()),
    )
    sample = folder / "files" / "sample.csv"
    with Client(home=folder) as client:
        for name in ("logreg.joblib", "always-zero.joblib", "forest.skops"):
            path, accuracy = files[name]
            step(
                f"mlops register fraud {name}",
                lambda p=path, a=accuracy: client.register(  # type: ignore[misc]
                    "fraud",
                    p,
                    trust=p.suffix == ".joblib",
                    sample=sample,
                    tags={"holdout_accuracy": f"{a:.3f}"},
                ),
                lambda v: f"fraud:{v.version} ({v.flavor}, sha256 {v.artifact_sha256[:12]})",
            )
        describe = _describe_release
        step(
            "mlops deploy fraud-api --model fraud:1",
            lambda: client.deploy("fraud-api", model="fraud:1"),
            describe,
        )
        step(
            "mlops deploy fraud-api --model fraud:2",
            lambda: client.deploy("fraud-api", model="fraud:2", reason="new candidate"),
            describe,
        )
        step(
            "mlops quarantine fraud:2",
            lambda: client.quarantine(
                "fraud:2",
                reason=f"holdout accuracy {files['always-zero.joblib'][1]:.3f}: predicts one class",
            ),
            lambda v: f"fraud:2 quarantined ({v.quarantine_reason})",
        )
        step(
            "mlops rollback", lambda: client.rollback(reason="fraud:2 predicts one class"), describe
        )
        step(
            "mlops deploy fraud-api --model fraud:3",
            lambda: client.deploy("fraud-api", model="fraud:3", reason="forest"),
            describe,
        )
        step(
            "mlops rollback --version 1",
            lambda: client.rollback(version=1, reason="back to the linear model"),
            describe,
        )
        history = client.history("fraud-api")

    table = Table("REV", "STATUS", "MODEL", "ACTION", "REASON", title="mlops history fraud-api")
    for record in history:
        event = record.event
        table.add_row(
            str(record.revision),
            record.status,
            str(record.components["model"]),
            event.action if event else "-",
            (event.reason if event else None) or "-",
        )
    console.print()
    console.print(table)
    console.print(
        f"\nDone in {time.perf_counter() - started:.1f} s. "
        f"Look around with: MLOPS_HOME={folder} mlops history fraud-api"
    )


def _describe_release(result: object) -> str:
    from mlops.records import ReleaseResult

    assert isinstance(result, ReleaseResult)
    if not result.changed:
        return f"unchanged at revision {result.revision}"
    restored = f" (restores revision {result.source_revision})" if result.source_revision else ""
    return f"revision {result.revision} serves fraud:{result.components['model'].version}{restored}"
