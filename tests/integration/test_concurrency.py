"""Several processes deploy and roll back one deployment at once, on SQLite and PostgreSQL.

Each operation either succeeds or fails with a conflict (exit code 4); the revisions stay
unique and gapless, every success owns exactly one revision, and each one acted on the
stable release it found, so no update is lost.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import random
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from mlops import Client, MlopsError, ReleaseRecord, ReleaseResult
from mlops.service import Service
from mlops.settings import load_settings

WORKERS = 8
OPERATIONS = 50
VERSIONS = 4
DEPLOYMENT = "api"
SETUP_REVISIONS = 2
"""The parent deploys m:1 then m:2, so a plain rollback always has a previous stable release."""

SEED = 20240601
START_TIMEOUT_S = 90.0
DEADLINE_S = 150.0
"""A hang fails the test after this long instead of blocking the run."""

CONFLICTS = ("ConcurrentUpdate", "Conflict")
KINDS = ("deploy", "rollback", "rollback_version", "rollback_revision")


def _choose(rng: random.Random, known_revision: int) -> tuple[str, int | None, bool]:
    """One random operation: (kind, argument, whether the deployment's name is left out)."""
    kind = rng.choice(KINDS)
    # With one deployment in the store, a rollback may leave the deployment's name out.
    omitted = kind != "deploy" and rng.random() < 0.5
    if kind in ("deploy", "rollback_version"):
        return kind, rng.randint(1, VERSIONS), omitted
    if kind == "rollback_revision":  # every revision up to one this worker saw exists
        return kind, rng.randint(1, known_revision), omitted
    return kind, None, omitted


def _perform(client: Client, kind: str, arg: int | None, omitted: bool) -> ReleaseResult:
    name = None if omitted else DEPLOYMENT
    if kind == "deploy":
        return client.deploy(DEPLOYMENT, model=f"m:{arg}")
    if kind == "rollback":
        return client.rollback(name)
    if kind == "rollback_version":
        return client.rollback(name, version=arg)
    return client.rollback(name, revision=arg)


def _worker(
    index: int, store_url: str, home: str, barrier: Any, out: str
) -> None:  # pragma: no cover - runs in a child process
    records: list[dict[str, Any]] = []
    # Warnings are errors here too, as pytest makes them in the parent (pyproject.toml).
    warnings.simplefilter("error")
    try:
        rng = random.Random(SEED + index)
        known_revision = SETUP_REVISIONS
        with Client(store_url, home=home) as client:
            barrier.wait(timeout=START_TIMEOUT_S)
            for seq in range(OPERATIONS):
                kind, arg, omitted = _choose(rng, known_revision)
                record: dict[str, Any] = {
                    "worker": index,
                    "seq": seq,
                    "kind": kind,
                    "arg": arg,
                    "omitted": omitted,
                }
                begun = time.time()
                result: ReleaseResult | None
                try:
                    result = _perform(client, kind, arg, omitted)
                except MlopsError as exc:
                    record.update(
                        ok=False,
                        error=type(exc).__name__,
                        exit_code=exc.exit_code,
                        message=exc.message,
                    )
                    result = None
                record.update(begun=begun, ended=time.time())
                if result is not None:
                    known_revision = max(known_revision, result.revision)
                    record.update(
                        ok=True,
                        action=result.action,
                        revision=result.revision,
                        changed=result.changed,
                        from_revision=result.from_revision,
                        source_revision=result.source_revision,
                        components={n: str(r) for n, r in result.components.items()},
                    )
                records.append(record)
    except BaseException:
        records.append({"worker": index, "unexpected": traceback.format_exc()})
    Path(out).write_text(json.dumps(records))


def _components(record: ReleaseRecord) -> dict[str, str]:
    return {name: str(ref) for name, ref in record.components.items()}


def _model(components: dict[str, str]) -> int:
    return int(components["model"].rpartition(":")[2])


def _run_workers(store_url: str, home: Path, out_dir: Path) -> tuple[list[dict[str, Any]], float]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    outs = [out_dir / f"worker-{i}.json" for i in range(WORKERS)]
    procs = [
        ctx.Process(
            target=_worker,
            args=(i, store_url, str(home), barrier, str(outs[i])),
            name=f"mlops-worker-{i}",
        )
        for i in range(WORKERS)
    ]
    started = time.monotonic()
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=max(0.1, DEADLINE_S - (time.monotonic() - started)))
        hung = [proc.name for proc in procs if proc.is_alive()]
        assert not hung, f"workers still running after {DEADLINE_S:.0f} s: {hung}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=10)
    elapsed = time.monotonic() - started
    failed = [(proc.name, proc.exitcode) for proc in procs if proc.exitcode != 0]
    assert not failed, f"workers exited abnormally: {failed}"
    records: list[dict[str, Any]] = []
    for out in outs:
        records.extend(json.loads(out.read_text()))
    return records, elapsed


def test_concurrent_deploys_and_rollbacks_lose_nothing(
    store_url: str, home: Path, model_files: dict[str, Path], tmp_path: Path
) -> None:
    with Client(store_url, home=home) as client:
        for key in ("joblib", "joblib2", "skops", "onnx")[:VERSIONS]:
            client.register("m", model_files[key], trust=True)
        for version in range(1, SETUP_REVISIONS + 1):
            client.deploy(DEPLOYMENT, model=f"m:{version}")
    seq_service = Service(load_settings(home=home, store_url=store_url))
    try:
        seq_before = seq_service.change_seq()
    finally:
        seq_service.close()

    out_dir = tmp_path / "outcomes"
    out_dir.mkdir()
    records, elapsed = _run_workers(store_url, home, out_dir)

    # Every operation ran, and each either succeeded or met a conflict (exit code 4).
    unexpected = [r["unexpected"] for r in records if "unexpected" in r]
    assert not unexpected, "a worker failed:\n" + "\n".join(unexpected)
    assert len(records) == WORKERS * OPERATIONS
    errors = [r for r in records if not r["ok"]]
    wrong = [r for r in errors if r["exit_code"] != 4 or r["error"] not in CONFLICTS]
    assert not wrong, f"operations failed with something other than a conflict: {wrong[:5]}"
    successes = [r for r in records if r["ok"]]
    changed = sorted((r for r in successes if r["changed"]), key=lambda r: r["revision"])
    kinds = Counter(r["kind"] for r in successes)
    running = max(r["ended"] for r in records) - min(r["begun"] for r in records)
    took = sorted(r["ended"] - r["begun"] for r in records)
    print(
        f"\n{store_url.split(':', 1)[0]}: {len(records)} operations in {running:.1f} s "
        f"(median {took[len(took) // 2]:.3f} s, slowest {took[-1]:.2f} s; "
        f"{elapsed:.1f} s with the processes' start): "
        f"{len(changed)} changed, {len(successes) - len(changed)} unchanged, "
        f"{len(errors)} conflicts {dict(Counter(r['error'] for r in errors))}; {dict(kinds)}"
    )
    assert len(successes) >= len(records) * 0.75, f"too many conflicts: {len(errors)}"

    with Client(store_url, home=home) as client:
        status = client.status(DEPLOYMENT)[0]
        latest = status.latest_revision
        history = client.history(DEPLOYMENT, limit=latest + 10)
        events = client.events(DEPLOYMENT, limit=10 * latest + 10)
    seq_service = Service(load_settings(home=home, store_url=store_url))
    try:
        seq_after = seq_service.change_seq()
    finally:
        seq_service.close()

    # The revisions are exactly 1..latest: unique, gapless, each with its own event.
    revisions = [r.revision for r in history]
    assert sorted(revisions) == list(range(1, latest + 1))
    assert len(set(revisions)) == len(revisions)
    release = {r.revision: r for r in history}
    release_events = sorted(
        e.to_revision or 0 for e in events if e.action in ("deploy", "rollback")
    )
    assert release_events == list(range(1, latest + 1)), "an event without its release, or twice"

    # Each changed operation owns exactly one revision, and none is lost.
    owned = [r["revision"] for r in changed]
    assert len(owned) == len(set(owned)), f"two operations claim one revision: {Counter(owned)}"
    assert set(owned) == set(range(SETUP_REVISIONS + 1, latest + 1))
    assert len(changed) == latest - SETUP_REVISIONS
    # The workers really ran at the same time: their revisions interleave.
    switches = sum(a["worker"] != b["worker"] for a, b in itertools.pairwise(changed))
    assert switches >= WORKERS, f"the workers barely overlapped ({switches} switches)"
    assert seq_after - seq_before == len(changed), "the change feed missed or doubled a change"

    # The chain: every release replaced the one stable just before it.
    for r in range(2, latest + 1):
        rec = release[r]
        assert rec.event is not None
        assert (rec.event.from_revision, rec.event.to_revision) == (r - 1, r), r
        assert rec.previous_stable == r - 1, r
        assert release[r - 1].status == (
            "rolled_back" if rec.event.action == "rollback" else "superseded"
        ), r
        if rec.source_revision is not None:  # a full rollback restores its source's content
            assert rec.source_revision < r
            assert rec.components == release[rec.source_revision].components, r
            assert rec.event.details["restores"] == rec.source_revision, r
    assert release[latest].status == "stable"
    assert [r.revision for r in history if r.status == "stable"] == [latest]

    # Each success did what it asked, to the stable release it found (none acted on stale state).
    for op in changed:
        r = op["revision"]
        rec = release[r]
        where = f"{op} vs release {r}"
        assert rec.event is not None
        assert op["action"] == rec.event.action, where
        assert op["from_revision"] == r - 1, where
        assert op["source_revision"] == rec.source_revision, where
        assert op["components"] == _components(rec), where
        assert _components(rec) != _components(release[r - 1]), where
        if op["kind"] == "deploy":
            assert (rec.event.action, rec.source_revision) == ("deploy", None), where
            assert _model(op["components"]) == op["arg"], where
        elif op["kind"] == "rollback":
            assert rec.source_revision == release[r - 1].previous_stable == r - 2, where
        elif op["kind"] == "rollback_revision":
            assert rec.source_revision == op["arg"], where
        else:
            assert _model(op["components"]) == op["arg"], where
            served = [s for s in range(1, r) if _model(_components(release[s])) == op["arg"]]
            assert rec.source_revision == (max(served) if served else None), where
    for op in successes:
        if op["changed"]:
            continue
        where = f"{op} vs release {op['revision']}"
        assert op["from_revision"] == op["revision"] <= latest, where
        assert op["components"] == _components(release[op["revision"]]), where
        assert op["kind"] != "rollback", where  # the previous stable always differs
        if op["kind"] == "rollback_revision":
            assert _components(release[op["arg"]]) == op["components"], where
        else:
            assert _model(op["components"]) == op["arg"], where

    assert status.revision == latest
    assert status.components == release[latest].components
