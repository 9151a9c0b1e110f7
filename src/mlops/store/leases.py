"""Leases: a named lock in the database held by one holder until it expires (the controller's
leader election), timed by the database's clock and fenced by an epoch.

Every time a lease changes hands (or its holder takes it again after it ran out) its epoch
grows by one. A holder acts under a `Fence` (the lease, the holder, the epoch it holds): every
write transaction opened while the fence is set first checks, in the same transaction, that the
lease still has that holder and epoch, and holds the lease row's lock (PostgreSQL) or the
database's write lock (SQLite) until it commits. A lease that ran out but was not taken by
another still fences its holder's work in: nobody else acted meanwhile. A
holder that was cut off, paused or slow therefore never writes after another took over: its
transaction fails with `LeaseLost` and writes nothing, and the taker waits for a transaction
already under way to end before it takes the lease.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import case, or_, select, update

from mlops.errors import InvalidInput, LeaseLost
from mlops.store import schema as t
from mlops.store.transaction import Transaction

if TYPE_CHECKING:
    from mlops.store.store import Store


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: datetime
    epoch: int


@dataclass(frozen=True)
class Fence:
    """What a holder's writes are checked against: lease `name`, held by `holder` at `epoch`."""

    name: str
    holder: str
    epoch: int

    def encode(self) -> str:
        return f"{self.epoch}:{self.name}:{self.holder}"

    @classmethod
    def decode(cls, text: str) -> Fence:
        try:
            epoch, name, holder = text.split(":", 2)
            return cls(name, holder, int(epoch))
        except ValueError:
            raise InvalidInput(f"{FENCE_ENV}: not a fence (EPOCH:LEASE:HOLDER)") from None


FENCE_ENV = "MLOPS_FENCE"
"""The environment variable that hands a fence to a child process (`mlops data restore`)."""

_fence: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("mlops_fence", default=None)


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Check every write transaction opened in this context (this thread) against `fence`."""
    token = _fence.set(fence)
    try:
        yield
    finally:
        _fence.reset(token)


def current_fence() -> Fence | None:
    return _fence.get()


def inherited_fence() -> contextlib.AbstractContextManager[None]:
    """The fence a parent process handed over in `MLOPS_FENCE`, if any, over this context."""
    handed = os.environ.get(FENCE_ENV)
    return fenced(Fence.decode(handed)) if handed else contextlib.nullcontext()


class LeaseRepo(Transaction):
    def database_now(self) -> datetime:
        """The database's clock: the one clock every host sharing the store agrees on."""
        if self.dialect == "postgresql":
            now: datetime = self.conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
            return now.astimezone(UTC)
        text = self.conn.exec_driver_sql("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").scalar_one()
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    def take_lease(self, name: str, holder: str, ttl_s: float) -> int | None:
        """Take or renew lease `name` for `holder` for `ttl_s` of the database's time; its
        epoch, or None while another holds it."""
        lease, now = t.leases, self.database_now()
        self.conn.execute(
            self.insert_new(lease, ["name"]).values(
                name=name, holder=holder, expires_at=now - timedelta(seconds=1), epoch=0
            )
        )
        held = (lease.c.holder == holder) & (lease.c.expires_at >= now)
        taken = self.conn.execute(
            update(lease)
            .where(lease.c.name == name, or_(lease.c.holder == holder, lease.c.expires_at < now))
            .values(
                holder=holder,
                expires_at=now + timedelta(seconds=ttl_s),
                epoch=case((held, lease.c.epoch), else_=lease.c.epoch + 1),
            )
        )
        if taken.rowcount != 1:
            return None
        epoch: int = self.conn.execute(
            select(lease.c.epoch).where(lease.c.name == name)
        ).scalar_one()
        return epoch

    def release_lease(self, name: str, holder: str) -> None:
        """Give lease `name` up, if `holder` has it, so another may take it at once."""
        lease = t.leases
        self.conn.execute(
            update(lease)
            .where(lease.c.name == name, lease.c.holder == holder)
            .values(expires_at=self.database_now() - timedelta(seconds=1))
        )

    def check_fence(self, fence: Fence) -> None:
        """Hold the lease's row until this transaction ends, if `fence` still holds it; else
        LeaseLost."""
        lease = t.leases
        held = self.conn.execute(
            update(lease)
            .where(
                lease.c.name == fence.name,
                lease.c.holder == fence.holder,
                lease.c.epoch == fence.epoch,
            )
            .values(epoch=lease.c.epoch)
        )
        if held.rowcount != 1:
            raise LeaseLost(
                f"lease {fence.name!r} epoch {fence.epoch} is no longer held by {fence.holder}"
            )

    def lease(self, name: str) -> Lease | None:
        """Lease `name` as last taken or given up (expired or not); None if never taken."""
        found = self.conn.execute(select(t.leases).where(t.leases.c.name == name)).first()
        if found is None:
            return None
        return Lease(found.name, found.holder, found.expires_at, found.epoch)


def acquire_lease(store: Store, *, name: str, holder: str, ttl_s: float) -> Fence | None:
    """Take or renew a lease in a write transaction of its own (never fenced); the fence to
    act under, or None while another holds it."""
    with fenced(None), store.write() as tx:
        epoch = tx.take_lease(name, holder, ttl_s)
    return None if epoch is None else Fence(name, holder, epoch)


def give_up_lease(store: Store, *, name: str, holder: str) -> None:
    """Give a lease up in a write transaction of its own, if `holder` has it."""
    with fenced(None), store.write() as tx:
        tx.release_lease(name, holder)
