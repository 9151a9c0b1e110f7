"""The live route table: read from the store, its versions loaded, swapped whole.

A watcher thread learns of changes (a change counter polled on SQLite, `LISTEN/NOTIFY` on
PostgreSQL, and a periodic re-read as a safety net), reads the new splits, loads any
version not yet in memory, and only then hands the finished table to the event loop, which
swaps it in one assignment. A version is loaded once and shared by every release that pins
it; versions that leave the table stay loaded for `keep_warm_s`, so a rollback inside that
window loads nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from mlops.core.refs import ComponentRef
from mlops.core.routing import Split
from mlops.gateway.batching import MicroBatcher
from mlops.gateway.runtime import LoadedVersion, Pipeline, make_pipeline
from mlops.service import Service
from mlops.store import schema as t
from mlops.store.store import CHANGE_CHANNEL

log = logging.getLogger("mlops.gateway")


@dataclass(frozen=True)
class Target:
    """One routed revision of a deployment, ready to serve."""

    deployment: str
    deployment_id: int
    revision: int
    pipeline: Pipeline
    batcher: MicroBatcher


@dataclass(frozen=True)
class DeploymentRoute:
    name: str
    id: int
    stable_revision: int
    split: Split
    targets: dict[int, Target]


@dataclass(frozen=True)
class LiveTable:
    seq: int
    deployments: dict[str, DeploymentRoute] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Deployments whose new routes could not be loaded, with the reason (the old routes stay)."""


@dataclass
class BatchSettings:
    max_batch_rows: int = 64
    max_wait_ms: float = 0.0
    max_queue_rows: int = 2048


class RouteLoader:
    """Builds LiveTables; owns the cache of loaded versions and their batchers."""

    def __init__(
        self, service: Service, executor: Executor, batching: BatchSettings, keep_warm_s: float
    ) -> None:
        self.service = service
        self.executor = executor
        self.batching = batching
        self.keep_warm_s = keep_warm_s
        self._versions: dict[int, LoadedVersion] = {}
        self._last_used: dict[int, float] = {}
        self._batchers: dict[tuple[int, ...], MicroBatcher] = {}

    def loaded_labels(self) -> list[str]:
        return sorted(version.label for version in list(self._versions.values()))

    def build(self, previous: LiveTable | None) -> LiveTable:
        """A new table from the store; a deployment that fails to load keeps its old routes."""
        store = self.service.store
        with store.read() as tx:
            seq = tx.change_seq()
            deployments = [
                d for d in tx.deployments(limit=100_000) if d.stable_revision is not None
            ]
            wanted: dict[str, tuple[Any, Split, dict[int, dict[str, int]]]] = {}
            for dep in deployments:
                assert dep.stable_revision is not None
                split = (
                    Split.from_dict(dep.routes) if dep.routes else Split.only(dep.stable_revision)
                )
                revisions = sorted(split.revisions)
                wanted[dep.name] = (dep, split, tx.pipeline_rows(dep, revisions))
            needed = {
                vid
                for _, _, rows in wanted.values()
                for comps in rows.values()
                for vid in comps.values()
            }
            records = tx.versions_by_id(sorted(needed - set(self._versions)))
        routes: dict[str, DeploymentRoute] = {}
        failures: dict[str, str] = {}
        for name, (dep, split, rows) in wanted.items():
            try:
                targets = {
                    rev: self._target(dep.name, dep.id, rev, comps, records)
                    for rev, comps in rows.items()
                }
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
                log.error("deployment %s: cannot load its new routes: %s", name, failures[name])
                if previous is not None and name in previous.deployments:
                    routes[name] = previous.deployments[name]
                continue
            routes[name] = DeploymentRoute(name, dep.id, dep.stable_revision, split, targets)
        now = time.monotonic()
        for route in routes.values():
            for target in route.targets.values():
                for vid in target.pipeline.key:
                    self._last_used[vid] = now
        self._evict(now)
        return LiveTable(seq, routes, failures)

    def _target(
        self,
        deployment: str,
        deployment_id: int,
        revision: int,
        components: dict[str, int],
        records: dict[int, Any],
    ) -> Target:
        if not components:
            raise LookupError(f"release {revision} of {deployment} does not exist")
        loaded = [(name, self._version(vid, records)) for name, vid in components.items()]
        pipeline = make_pipeline(loaded)
        batcher = self._batchers.get(pipeline.key)
        if batcher is None:
            batcher = MicroBatcher(
                pipeline,
                self.executor,
                max_batch_rows=self.batching.max_batch_rows,
                max_wait_ms=self.batching.max_wait_ms,
                max_queue_rows=self.batching.max_queue_rows,
            )
            self._batchers[pipeline.key] = batcher
        return Target(deployment, deployment_id, revision, pipeline, batcher)

    def _version(self, version_id: int, records: dict[int, Any]) -> LoadedVersion:
        loaded = self._versions.get(version_id)
        if loaded is None:
            record = records[version_id]
            model = self.service.load(ComponentRef(record.model, record.version))
            loaded = self._versions[version_id] = LoadedVersion(record, model)
            log.info("loaded %s (%s)", loaded.label, record.flavor)
        return loaded

    def _evict(self, now: float) -> None:
        for vid, used in list(self._last_used.items()):
            if now - used > self.keep_warm_s:
                self._versions.pop(vid, None)
                self._last_used.pop(vid, None)
        for key in [k for k in self._batchers if not all(v in self._versions for v in k)]:
            del self._batchers[key]


class Watcher:
    """Calls `on_change` with a new LiveTable whenever the store's routes change."""

    def __init__(
        self,
        loader: RouteLoader,
        on_change: Callable[[LiveTable], None],
        *,
        poll_s: float = 0.02,
        reread_s: float = 5.0,
    ) -> None:
        self.loader = loader
        self.on_change = on_change
        self.poll_s = poll_s
        self.reread_s = reread_s
        self.table: LiveTable | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> LiveTable:
        table = self.loader.build(self.table)
        self.table = table
        self.on_change(table)
        return table

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlops-routes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.loader.service.store.dialect == "postgresql":
                    self._listen()
                else:
                    self._poll()
            except Exception:
                log.exception("route watcher failed; retrying in a second")
                self._stop.wait(1.0)

    def _changed(self, seq: int) -> bool:
        return self.table is None or seq != self.table.seq

    def _poll(self) -> None:
        engine = self.loader.service.store.engine
        stmt = select(t.store_meta.c.value).where(t.store_meta.c.key == "change_seq")
        last_full = time.monotonic()
        with engine.connect() as conn:
            while not self._stop.is_set():
                seq = int(conn.execute(stmt).scalar_one())
                conn.rollback()
                if self._changed(seq) or time.monotonic() - last_full > self.reread_s:
                    last_full = time.monotonic()
                    self.refresh()
                self._stop.wait(self.poll_s)

    def _listen(self) -> None:
        import psycopg

        url = self.loader.service.store.engine.url
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANGE_CHANNEL}")
            self.refresh()
            while not self._stop.is_set():
                got = False
                for _ in conn.notifies(timeout=self.reread_s, stop_after=1):
                    got = True
                if got:
                    self.refresh()
                elif not self._stop.is_set():
                    seq = int(
                        conn.execute(
                            "SELECT value FROM store_meta WHERE key = 'change_seq'"
                        ).fetchone()[0]  # type: ignore[index]
                    )
                    if self._changed(seq):
                        self.refresh()
