"""The live route table: read from the store, its versions loaded, swapped whole.

A watcher thread learns of changes (a change counter polled on SQLite, `LISTEN/NOTIFY` on
PostgreSQL, and a periodic re-read as a safety net), reads the new splits, loads any
version not yet in memory, and only then hands the finished table to the event loop, which
swaps it in one assignment. A version is loaded once and shared by every release that pins
it; versions that leave the table stay loaded for `keep_warm_s`, so a rollback inside that
window loads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mlops.core.refs import ComponentRef
from mlops.core.routing import Split
from mlops.errors import DependencyFailed, IntegrityError, UntrustedArtifact
from mlops.records import DataResource, Deployment, ModelVersion
from mlops.runtime import LoadedVersion, Pipeline, make_pipeline
from mlops.runtime.batching import MicroBatcher
from mlops.service import Service

log = logging.getLogger("mlops.gateway")
T = TypeVar("T")


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

    def stable_only(self) -> LiveTable:
        """This table with every deployment on its stable release alone: no candidate share,
        no mirrored copies, no pinned request to another release."""
        routes = {
            name: DeploymentRoute(
                route.name,
                route.id,
                route.stable_revision,
                Split.only(route.stable_revision),
                {
                    rev: target
                    for rev, target in route.targets.items()
                    if rev == route.stable_revision
                },
            )
            for name, route in self.deployments.items()
        }
        return LiveTable(self.seq, routes, self.failures)

    @property
    def comparing(self) -> bool:
        """Whether some deployment splits or mirrors traffic: a rollout is being judged."""
        return any(
            len(route.split.weights) > 1 or route.split.shadows
            for route in self.deployments.values()
        )


@dataclass
class RoutePlan:
    seq: int
    wanted: dict[str, tuple[Deployment, Split, dict[int, dict[str, int]]]]
    missing: dict[int, ModelVersion]
    """Versions the plan routes to that are not in memory yet."""
    load_errors: dict[int, str] = field(default_factory=dict)
    resources: dict[int, dict[str, DataResource]] = field(default_factory=dict)
    """The data resources of each deployment (by id), which lookups read."""


def load_failure(exc: Exception) -> str:
    """Why a version could not be loaded, in words safe to show to any client."""
    if isinstance(exc, IntegrityError):
        return "cannot be loaded: its artifact is missing or corrupt"
    if isinstance(exc, UntrustedArtifact):
        return "cannot be loaded: it was not registered with --trust"
    if isinstance(exc, DependencyFailed):
        return "cannot be loaded: a library it needs is missing or failed"
    return "cannot be loaded: see the server's log"


@dataclass
class BatchSettings:
    max_batch_rows: int = 64
    max_wait_ms: float = 0.0
    max_queue_rows: int = 2048


class RouteLoader:
    """Builds LiveTables; owns the cache of loaded versions and their batchers."""

    def __init__(self, service: Service, batching: BatchSettings, keep_warm_s: float) -> None:
        self.service = service
        self.batching = batching
        self.keep_warm_s = keep_warm_s
        self._versions: dict[int, LoadedVersion] = {}
        self._last_used: dict[int, float] = {}
        self._batchers: dict[tuple[Any, ...], MicroBatcher] = {}

    def loaded_labels(self) -> list[str]:
        return sorted(version.label for version in list(self._versions.values()))

    def read(self) -> RoutePlan:
        """What the store routes now, by keyed reads (fast: safe on the event loop)."""
        with self.service.store.read() as tx:
            seq = tx.change_seq()
            wanted: dict[str, tuple[Deployment, Split, dict[int, dict[str, int]]]] = {}
            for dep in tx.deployments(limit=None):
                if dep.stable_revision is None:
                    continue
                routes = dep.routes or {}
                split = (
                    Split.from_dict(routes)
                    if routes.get("weights")
                    else Split.only(dep.stable_revision)
                )
                # A release replaced by a rollout stays loaded (not routed) for its keep_warm.
                warm = {
                    int(rev)
                    for rev, until in (routes.get("warm") or {}).items()
                    if float(until) > time.time()
                }
                # The stable release is always loaded: it is what a gateway cut off from the
                # store falls back to.
                revisions = sorted(split.revisions | warm | {dep.stable_revision})
                wanted[dep.name] = (dep, split, tx.pipeline_rows(dep, revisions))
            needed = {
                vid for _, _, rows in wanted.values() for c in rows.values() for vid in c.values()
            }
            missing = tx.versions_by_id(sorted(needed - set(self._versions)))
            resources = tx.all_data_resources()
        return RoutePlan(seq, wanted, missing, resources=resources)

    def load(self, plan: RoutePlan) -> None:
        """Load the versions the plan needs and memory lacks (slow: run it off the event loop)."""
        for vid, record in plan.missing.items():
            if vid in self._versions:
                continue
            try:
                model = self.service.load(ComponentRef(record.model, record.version))
            except Exception as exc:
                # Readiness shows the short reason to any client; the log has the whole story
                # (store paths included).
                plan.load_errors[vid] = f"{record.model}:{record.version} {load_failure(exc)}"
                log.error(
                    "cannot load %s:%s: %s: %s",
                    record.model,
                    record.version,
                    type(exc).__name__,
                    exc,
                )
                continue
            self._versions[vid] = LoadedVersion(record, model)
            log.info("loaded %s:%s (%s)", record.model, record.version, record.flavor)

    def assemble(self, plan: RoutePlan, previous: LiveTable | None) -> LiveTable:
        """The table for a plan whose versions are loaded; a deployment that cannot be served
        keeps its previous routes, so no traffic goes to a broken version."""
        routes: dict[str, DeploymentRoute] = {}
        failures: dict[str, str] = {}
        for name, (dep, split, rows) in plan.wanted.items():
            assert dep.stable_revision is not None
            try:
                targets = {
                    rev: self._target(dep.name, dep.id, rev, comps, plan)
                    for rev, comps in rows.items()
                }
            except LookupError as exc:
                failures[name] = str(exc)
                log.error("deployment %s keeps its previous routes: %s", name, exc)
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
        return LiveTable(plan.seq, routes, failures)

    def _target(
        self,
        deployment: str,
        deployment_id: int,
        revision: int,
        components: dict[str, int],
        plan: RoutePlan,
    ) -> Target:
        if not components:
            raise LookupError(f"release {revision} of {deployment} does not exist")
        for vid in components.values():
            if vid not in self._versions:
                raise LookupError(plan.load_errors.get(vid, f"version id {vid} is not loaded"))
        loaded = [(name, self._versions[vid]) for name, vid in components.items()]
        pipeline = make_pipeline(loaded, plan.resources.get(deployment_id, {}))
        batcher = self._batchers.get(pipeline.batch_key)
        if batcher is None:
            batcher = MicroBatcher(
                pipeline,
                max_batch_rows=self.batching.max_batch_rows,
                max_wait_ms=self.batching.max_wait_ms,
                max_queue_rows=self.batching.max_queue_rows,
                inline=pipeline.bounded,
            )
            self._batchers[pipeline.batch_key] = batcher
        return Target(deployment, deployment_id, revision, pipeline, batcher)

    def _evict(self, now: float) -> None:
        for vid, used in list(self._last_used.items()):
            if now - used > self.keep_warm_s:
                self._versions.pop(vid, None)
                self._last_used.pop(vid, None)
        for key in list(self._batchers):
            if not all(v in self._versions for v in key if isinstance(v, int)):
                self._batchers.pop(key).close()

    def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.close()


class Watcher:
    """Keeps the gateway's table current: asyncio tasks on the gateway's event loop.

    Reads are keyed and short, so they run on the loop itself: a thread would wait for the GIL
    behind busy predict threads at every I/O call (a route switch took 42 ms at p50 that
    way, against under 1 ms on the loop). On PostgreSQL the notifications and a read of the
    change counter at least every quarter of `max_staleness_s` go over an asynchronous
    connection, bounded in time, which proves contact; the table is read only right after
    that. After `max_staleness_s` without contact the gateway serves only the releases that
    were stable when it lost contact (`LiveTable.stable_only`): a candidate the controller has
    meanwhile rolled back gets no more traffic, and the host stays in service. The first
    read that succeeds again brings the whole table back. Only loading a version that is not
    in memory goes to a thread.
    """

    def __init__(
        self,
        loader: RouteLoader,
        install: Callable[[LiveTable], None],
        *,
        poll_s: float = 0.02,
        reread_s: float = 5.0,
        max_staleness_s: float = 5.0,
    ) -> None:
        self.loader = loader
        self.install = install
        self.poll_s = poll_s
        self.reread_s = reread_s
        self.max_staleness_s = max_staleness_s
        self.table: LiveTable | None = None
        self.last_contact = time.monotonic()
        self.cut_off = False
        """Whether the gateway serves the stable-only table for want of the store."""
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def _read(self, read: Callable[[], T]) -> T:
        """A read from the store; every one that succeeds proves contact."""
        value = read()
        self.last_contact = time.monotonic()
        return value

    async def refresh(self) -> LiveTable:
        async with self._lock:
            plan = self._read(self.loader.read)
            if plan.missing:
                await asyncio.get_running_loop().run_in_executor(None, self.loader.load, plan)
            table = self.loader.assemble(plan, self.table)
            self.table = table
            if self.cut_off:
                log.warning("in contact with the store again: serving its routes")
                self.cut_off = False
            self.install(table)
            return table

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._watch_contact())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                if self.loader.service.store.changes.pushed:
                    await self._listen()
                else:
                    await self._poll()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, DependencyFailed, OSError) as exc:
                log.warning("route watcher: %s; retrying in a second", _why(exc))
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("route watcher failed; retrying in a second")
                await asyncio.sleep(1.0)

    async def _watch_contact(self) -> None:
        period = min(0.25, self.max_staleness_s / 4)
        while True:
            await asyncio.sleep(period)
            silent = time.monotonic() - self.last_contact
            if self.cut_off or self.table is None or silent <= self.max_staleness_s:
                continue
            self.cut_off = True
            self.install(self.table.stable_only())
            log.warning(
                "no contact with the store for %.1f s: serving only the stable releases", silent
            )

    def _changed(self, seq: int) -> bool:
        return self.table is None or seq != self.table.seq

    async def _poll(self) -> None:
        last_full = time.monotonic()
        with self.loader.service.store.changes.polling() as read_seq:
            while True:
                seq = self._read(read_seq)
                due = time.monotonic() - last_full > self.reread_s
                if self.cut_off or self._changed(seq) or due:
                    last_full = time.monotonic()
                    await self.refresh()
                await asyncio.sleep(self.poll_s)

    async def _listen(self) -> None:
        heartbeat = min(self.reread_s, self.max_staleness_s / 4)
        async with self.loader.service.store.changes.listening() as listener:
            await self.refresh()
            last_full = time.monotonic()
            while True:
                seq = await listener.wait(heartbeat)
                if seq is None or seq < 0:  # no news for a while: is the store still there?
                    seq = await asyncio.wait_for(listener.change_seq(), self.max_staleness_s)
                self.last_contact = time.monotonic()
                due = time.monotonic() - last_full > self.reread_s
                if self.cut_off or self._changed(seq) or due:
                    last_full = time.monotonic()
                    await self.refresh()


def _why(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
