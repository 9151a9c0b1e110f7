"""Leases: a named lock in the database held by one holder until it expires (the controller's
leader election), with fencing by expiry time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from mlops.store import schema as t
from mlops.store.transaction import Transaction

if TYPE_CHECKING:
    from mlops.store.store import Store


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: datetime


class LeaseRepo(Transaction):
    def take_lease(self, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
        """Take or renew lease `name` for `holder` until now + ttl; False while another holds it."""
        lease = t.leases
        self.conn.execute(
            self.insert_new(lease, ["name"]).values(
                name=name, holder=holder, expires_at=now - timedelta(seconds=1)
            )
        )
        taken = self.conn.execute(
            update(lease)
            .where(lease.c.name == name, or_(lease.c.holder == holder, lease.c.expires_at < now))
            .values(holder=holder, expires_at=now + timedelta(seconds=ttl_s))
        )
        return bool(taken.rowcount == 1)

    def release_lease(self, name: str, holder: str, now: datetime) -> None:
        """Give lease `name` up, if `holder` has it, so another may take it at once."""
        lease = t.leases
        self.conn.execute(
            update(lease)
            .where(lease.c.name == name, lease.c.holder == holder)
            .values(expires_at=now - timedelta(seconds=1))
        )

    def lease(self, name: str) -> Lease | None:
        """Lease `name` as last taken or given up (expired or not); None if never taken."""
        found = self.conn.execute(select(t.leases).where(t.leases.c.name == name)).first()
        if found is None:
            return None
        return Lease(found.name, found.holder, found.expires_at)


def acquire_lease(store: Store, *, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
    """Take or renew a lease in a write transaction of its own; False while another holds it."""
    with store.write() as tx:
        return tx.take_lease(name, holder, now, ttl_s)


def give_up_lease(store: Store, *, name: str, holder: str, now: datetime) -> None:
    """Give a lease up in a write transaction of its own, if `holder` has it."""
    with store.write() as tx:
        tx.release_lease(name, holder, now)
