"""A gateway worker's state: the live table, what keeps it current, and what serves and
measures it. Handlers reach it as `request.app.state.gateway`."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Protocol

from mlops.core.access import parse_networks
from mlops.core.ratelimit import TokenBucket
from mlops.gateway.config import GatewayConfig
from mlops.gateway.prediction import PredictionPath
from mlops.gateway.recorder import PromMetrics, Recorder
from mlops.gateway.routes import BatchSettings, LiveTable, RouteLoader, Watcher
from mlops.service import Service, utcnow
from mlops.service.sso import authenticator_for
from mlops.settings import load_settings
from mlops.store import Store


class Companion(Protocol):
    """Something that runs beside the gateway in its process, on its service (the rollout
    controller, when `mlops serve` runs it): started once the routes are loaded, stopped
    first."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


CompanionFactory = Callable[[Service], Companion]


class Gateway:
    """Per-process state: the live table and what serves and measures it."""

    def __init__(self, config: GatewayConfig, companion: CompanionFactory | None = None) -> None:
        self.config = config
        settings = load_settings(home=config.home, store_url=config.store)
        # A worker cut off mid-transaction (a measurement flush) must not hold the rows it
        # locked for longer than it takes to notice: the server ends the transaction.
        store = Store(settings.store_url, idle_in_transaction_s=2 * config.max_staleness_s)
        self.service = Service(settings, store=store)
        self.loader = RouteLoader(
            self.service,
            BatchSettings(config.batch_max_rows, config.batch_max_wait_ms, config.queue_max_rows),
            config.keep_warm_s,
        )
        self.recorder = Recorder(
            self.service.store,
            config.worker,
            utcnow,
            flush_interval_s=config.flush_interval_s,
            fast_flush_s=config.fast_flush_s,
            fast=lambda: self.table.comparing,
            log_predictions=config.log_predictions,
            retention_s=config.retention_s,
            prom=PromMetrics(),
        )
        self.table = LiveTable(seq=-1)
        self.ready = False
        self.watcher = Watcher(
            self.loader,
            self._install,
            poll_s=config.poll_s,
            max_staleness_s=config.max_staleness_s,
        )
        self.path = PredictionPath(lambda: self.table, self.recorder, config.timeout_s)
        self._label_limits: dict[int, TokenBucket] = {}
        self.authenticator = authenticator_for(self.service, config.sso())
        self.trusted_proxies = parse_networks(config.trusted_proxies)
        self.companion = companion(self.service) if companion is not None else None

    def may_label(self, deployment_id: int) -> bool:
        rate = self.config.labels_per_s
        bucket = self._label_limits.setdefault(deployment_id, TokenBucket(rate, rate))
        return bucket.take(time.monotonic())

    def _install(self, table: LiveTable) -> None:
        self.table = table  # the swap: one assignment of an immutable table
        self.ready = not table.failures
        # What is alive now (the loaded models above all) stays alive while routed: kept out of
        # the collector's full passes, which otherwise walk it every few seconds under load and
        # hold the event loop for tens of ms each time (docs/benchmarks.md, "Tail latency").
        gc.freeze()

    async def start(self) -> None:
        await self.watcher.refresh()
        self.watcher.start()
        self.recorder.start()
        if self.companion is not None:
            self.companion.start()

    async def stop(self) -> None:
        if self.companion is not None:
            self.companion.stop()
        await self.watcher.stop()
        await self.path.drain(self.config.timeout_s)
        self.recorder.stop()
        self.loader.close()
        self.service.close()
