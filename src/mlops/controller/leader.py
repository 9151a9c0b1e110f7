"""One controller leads: the holder of the `controller` lease, renewed every tick.

Several controllers (gateway workers, `mlops controller` processes, machines sharing a
PostgreSQL store) may run; each tick each tries to take or renew the lease, and only the
holder ticks the rollouts. The lease is timed by the database's clock, so hosts whose clocks
disagree still agree on who leads. When the leader dies its lease expires and another takes
over within two lease periods. A tick writes under the lease's fence (its epoch): a leader cut
off from the store, or paused past its lease, writes nothing once another has taken over
(`mlops.store.leases`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from mlops.controller.loop import Controller
from mlops.service import Service
from mlops.settings import Settings
from mlops.store import Store
from mlops.store.leases import Fence, acquire_lease, fenced, give_up_lease

log = logging.getLogger("mlops.controller")

LEASE = "controller"

IDLE_MIN_S = 5.0


def idle_limit_s(lease_s: float) -> float:
    """How long the store lets a controller's transaction sit idle before it ends it. A tick's
    transactions never wait on anything but the database; one left idle belongs to a
    controller cut off mid-tick, and it holds the lease's row, so the controller that takes
    over would wait for it as long as the server takes to see the session is dead (hours, by
    its default keepalives)."""
    return max(IDLE_MIN_S, 2 * lease_s)


def controller_service(settings: Settings, lease_s: float) -> Service:
    """The service a controller process runs on: its store ends a transaction left idle."""
    return Service(
        settings, store=Store(settings.store_url, idle_in_transaction_s=idle_limit_s(lease_s))
    )


class LeaderLoop:
    def __init__(
        self,
        controller: Controller,
        *,
        tick_s: float = 1.0,
        active_tick_s: float = 0.25,
        lease_s: float = 5.0,
        holder: str | None = None,
        after_tick: Callable[[], None] | None = None,
    ) -> None:
        self.controller = controller
        self.tick_s = tick_s
        self.active_tick_s = min(tick_s, active_tick_s)
        self.lease_s = lease_s
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.after_tick = after_tick
        self.leading = False
        self.fence: Fence | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """Take or renew the lease; tick under its fence if it is ours. Returns whether this
        one leads."""
        store = self.controller.service.store
        fence = acquire_lease(store, name=LEASE, holder=self.holder, ttl_s=self.lease_s)
        leading = fence is not None
        if leading != self.leading:
            log.info("%s %s the controller lease", self.holder, "took" if leading else "lost")
            self.leading = leading
        self.fence = fence
        if fence is not None:
            with fenced(fence):
                for line in self.controller.tick():
                    log.warning("%s", line)
                if self.after_tick is not None:
                    self.after_tick()
        return leading

    def run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except Exception:
                log.exception("controller tick failed")
            # While rollouts are active, the leader ticks sooner: a bad candidate leaves sooner.
            busy = self.leading and self.controller.active
            period = self.active_tick_s if busy else self.tick_s
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="mlops-controller", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask `run` to return after the current tick (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop ticking; a leader gives its lease up, so another controller leads at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.leading:
            try:
                give_up_lease(self.controller.service.store, name=LEASE, holder=self.holder)
            except Exception:
                log.exception("could not give the controller lease up; it expires on its own")
            self.leading = False
        self.controller.close()
