"""The outbox: alerts committed with the state change that caused them, delivered afterwards.

How the controller uses it:

    channels = subscriptions_for(spec.notify, deployment, "rolled_back")
    with store.write() as tx:                       # the transaction of the state change
        event_id = tx.insert_event(...)
        enqueue(tx, event_id, channels, Alert(...))  # committed with it, or not at all

    notifiers = notifiers_for(entries)              # channel -> Notifier, built once
    report = deliver_due(store, notifiers, now)     # each tick, with no transaction open
    # report.next_due says when the next row falls due

`deliver_due` must be called with no transaction open (on SQLite, a caller's open write
transaction would make its claim wait for the busy timeout). It first reads whether
anything is due, so an idle call takes no write lock; then it works in three short steps,
and never holds the database's write lock (SQLite) or a row lock (PostgreSQL) while it
waits on a receiver:

1. claim, in one write transaction: the due rows (undelivered, `next_attempt_at <= now`,
   fewer than `max_attempts` tries, a channel it has a notifier for), oldest first, with
   `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite's `BEGIN IMMEDIATE` serialises
   claims). It leases them by moving `next_attempt_at` to `now + lease_s`, so a concurrent
   deliverer skips them, and one that crashed gives them back when the lease runs out.
2. send each row, outside any transaction. A deliverer starts no send after half its
   lease has passed (the rest are handed back), so a lease never runs out under a send.
3. record, in one write transaction: `delivered_at` (and the try) for each 2xx; for each
   failure one more try in `attempts`, `last_error` and `next_attempt_at = now + backoff`.

Order: within a channel, rows go out in id order. A row is sent only when every earlier
undelivered row of its channel is in the same claim; after a failure, the channel's later
rows wait (they are `deferred`, uncounted) until the failed one gets through or gives up.

Retries: the n-th failed try waits `min(max_delay_s, first_delay_s * 2**(n-1))` (1 s,
2 s, 4 s … 5 min), or longer when the receiver asks (`Retry-After`, within the cap).
After `max_attempts` tries a row stays undelivered for good, with its last error:
`undelivered()` lists it.

Guarantee: at least once, exactly once in practice. A row is marked delivered only after
the receiver's 2xx, so a crash (or a lost store) after the request went out and before the
mark (while waiting for the answer, or after it) makes the row go out again when its lease
ends. Receivers dedupe on the delivery id (`X-Mlops-Delivery`, the outbox row's id), which
is the same on every resend.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mlops.notify.alert import Alert, Notification, utc
from mlops.notify.notifier import DeliveryFailed, Notifier
from mlops.store import Store
from mlops.store.outbox import OutboxRow
from mlops.store.store import Tx

log = logging.getLogger("mlops.notify")

ERROR_LIMIT = 1000
"""Longest `last_error` kept, in characters."""
MAX_PARALLEL_CHANNELS = 16
"""Channels sent to at the same time by one `deliver_due`."""


@dataclass(frozen=True)
class RetryPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 300.0
    max_attempts: int = 20
    """About an hour of tries with the default delays; then the row stays failed."""
    lease_s: float = 30.0
    """How long a claim holds its rows; sends start only in its first half."""

    def __post_init__(self) -> None:
        if self.lease_s <= 0 or self.max_attempts < 1:
            raise ValueError("a retry policy needs lease_s > 0 and max_attempts >= 1")
        if not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError("a retry policy needs 0 <= first_delay_s <= max_delay_s")

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed try."""
        backoff = min(self.max_delay_s, self.first_delay_s * 2.0 ** min(attempts - 1, 60))
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_delay_s))
        return backoff


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class DeliveryReport:
    """What one `deliver_due` call did, by outbox id."""

    delivered: tuple[int, ...] = ()
    failed: tuple[tuple[int, str], ...] = ()
    """Tried and failed; each will be tried again after its backoff."""
    gave_up: tuple[tuple[int, str], ...] = ()
    """Failed its last allowed try: stays undelivered, listed by `undelivered()`."""
    deferred: tuple[int, ...] = ()
    """Claimed but not tried (behind a failure in its channel, or out of lease time)."""
    next_due: datetime | None = None
    """When this deliverer next has a row to send (the earliest of each channel's oldest
    undelivered row); None when it has none left. A row enqueued later can be due sooner."""


@dataclass(frozen=True)
class OutboxEntry:
    """An undelivered row, for status pages and operators."""

    id: int
    event_id: int
    channel: str
    kind: str
    deployment: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    gave_up: bool


@dataclass(frozen=True)
class _Failure:
    claim: OutboxRow
    reason: str
    retry_after: float | None


@dataclass
class _Outcomes:
    delivered: list[OutboxRow] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    deferred: list[OutboxRow] = field(default_factory=list)


def channel_kind(channel: str) -> str:
    """`webhook`, `slack` or `log`: a bounded label for a channel."""
    kind = channel.split(":", 1)[0]
    return kind if kind in ("webhook", "slack", "log") else "other"


_failure_counter: Any = None


def _count_failure(channel: str) -> None:
    """`mlops_alert_failures_total{channel_kind}`, on the process's Prometheus registry."""
    global _failure_counter
    if _failure_counter is None:
        from prometheus_client import Counter

        _failure_counter = Counter(
            "mlops_alert_failures",
            "Failed tries to deliver an alert, by the kind of its receiver",
            ["channel_kind"],
        )
    _failure_counter.labels(channel_kind(channel)).inc()


def enqueue(tx: Tx, event_id: int, channels: Iterable[str], alert: Alert) -> list[int]:
    """Queue `alert` for each channel (once each), inside the caller's write transaction.

    The rows fall due at `alert.at`. Returns their ids (the delivery ids), in channel order.
    If the transaction rolls back, no row is left.
    """
    if not tx.write:
        raise ValueError("enqueue belongs in the write transaction of the change it reports")
    payload = alert.to_dict()
    due = utc(alert.at)
    ids: list[int] = []
    for channel in dict.fromkeys(channels):
        if not channel or len(channel) > 255:
            raise ValueError(f"a channel is 1 to 255 characters, not {channel!r}")
        ids.append(tx.enqueue_alert(event_id=event_id, channel=channel, payload=payload, due=due))
    return ids


def deliver_due(
    store: Store,
    notifiers: Mapping[str, Notifier],
    now: datetime,
    *,
    limit: int = 100,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> DeliveryReport:
    """Send up to `limit` due rows of the channels in `notifiers`, and record the outcomes."""
    now = utc(now)
    channels = sorted(notifiers)
    if not channels:
        return DeliveryReport()
    # A read first: most calls find nothing due, and need not take SQLite's write lock.
    with store.read() as tx:
        next_due = _next_due(tx, channels, policy)
    if next_due is None or next_due > now:
        return DeliveryReport(next_due=next_due)
    lease_until = now + timedelta(seconds=policy.lease_s)
    started = time.monotonic()
    claims = _claim(store, channels, now, lease_until, limit, policy)
    if not claims:  # another deliverer took them
        with store.read() as tx:
            return DeliveryReport(next_due=_next_due(tx, channels, policy))
    by_channel: dict[str, list[OutboxRow]] = {}
    for claim in claims:
        by_channel.setdefault(claim.channel, []).append(claim)

    def send_in_order(mine: list[OutboxRow]) -> _Outcomes:
        """One channel's claims, oldest first; after a failure the rest wait."""
        out = _Outcomes()
        for claim in mine:
            if out.failures or time.monotonic() - started > policy.lease_s / 2:
                out.deferred.append(claim)
                continue
            failure = _send(notifiers[claim.channel], claim)
            if failure is None:
                out.delivered.append(claim)
            else:
                out.failures.append(failure)
        return out

    # Channels are sent to side by side: a receiver that hangs until its timeout holds back
    # only its own alerts.
    if len(by_channel) == 1:
        results = [send_in_order(claims)]
    else:
        workers = min(len(by_channel), MAX_PARALLEL_CHANNELS)
        with ThreadPoolExecutor(workers, thread_name_prefix="mlops-notify") as pool:
            results = list(pool.map(send_in_order, by_channel.values()))
    delivered = sorted((c for r in results for c in r.delivered), key=lambda c: c.id)
    failures = sorted((f for r in results for f in r.failures), key=lambda f: f.claim.id)
    deferred = sorted((c for r in results for c in r.deferred), key=lambda c: c.id)
    return _record(store, channels, now, lease_until, policy, delivered, failures, deferred)


def undelivered(
    tx: Tx, *, limit: int = 100, max_attempts: int = DEFAULT_POLICY.max_attempts
) -> list[OutboxEntry]:
    """Rows not delivered yet, oldest first: waiting ones and those that gave up."""
    out = []
    for row in tx.undelivered_rows(limit=limit):
        payload = row.payload if isinstance(row.payload, dict) else {}
        out.append(
            OutboxEntry(
                id=row.id,
                event_id=row.event_id,
                channel=row.channel,
                kind=str(payload.get("kind", "?")),
                deployment=str(payload.get("deployment", "?")),
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                last_error=row.last_error,
                gave_up=row.attempts >= max_attempts,
            )
        )
    return out


def prune_delivered(tx: Tx, before: datetime) -> int:
    """Delete rows delivered before `before`; returns how many."""
    return tx.prune_outbox(before=utc(before))


def _claim(
    store: Store,
    channels: list[str],
    now: datetime,
    lease_until: datetime,
    limit: int,
    policy: RetryPolicy,
) -> list[OutboxRow]:
    with store.write() as tx:
        rows = tx.due_rows(
            channels=channels, now=now, limit=limit, max_attempts=policy.max_attempts
        )
        if not rows:
            return []
        # Per channel, the oldest live row this claim does not hold (waiting on its backoff,
        # or held by another deliverer): the claim's later rows of that channel wait for it.
        first_other = tx.first_live_ids(
            channels={row.channel for row in rows},
            excluding=[row.id for row in rows],
            max_attempts=policy.max_attempts,
        )
        mine = [row for row in rows if row.id < first_other.get(row.channel, math.inf)]
        if mine:
            tx.lease_rows([row.id for row in mine], until=lease_until)
        return mine


def _send(notifier: Notifier, claim: OutboxRow) -> _Failure | None:
    try:
        message = Notification(
            claim.id, claim.event_id, claim.channel, Alert.from_dict(claim.payload)
        )
        notifier.send(message)
    except DeliveryFailed as exc:
        log.warning("delivery %d to %s failed: %s", claim.id, claim.channel, exc.reason)
        return _Failure(claim, exc.reason, exc.retry_after)
    except Exception as exc:  # a notifier's bug must not stop the others
        log.exception("delivery %d to %s raised", claim.id, claim.channel)
        return _Failure(claim, f"{type(exc).__name__}: {exc}", None)
    return None


def _record(
    store: Store,
    channels: list[str],
    now: datetime,
    lease_until: datetime,
    policy: RetryPolicy,
    delivered: list[OutboxRow],
    failures: list[_Failure],
    deferred: list[OutboxRow],
) -> DeliveryReport:
    # Updates of failed and deferred rows hold only while this claim's lease does: if it ran
    # out and another deliverer took the row, that one's outcome is the one that counts.
    failed: list[tuple[int, str]] = []
    gave_up: list[tuple[int, str]] = []
    with store.write() as tx:
        if delivered:
            tx.mark_delivered([c.id for c in delivered], at=now)
        for failure in failures:
            attempts = failure.claim.attempts + 1
            wait = policy.delay(attempts, failure.retry_after)
            tx.mark_failed(
                failure.claim.id,
                leased_until=lease_until,
                error=failure.reason[:ERROR_LIMIT],
                retry_at=now + timedelta(seconds=wait),
            )
            entry = (failure.claim.id, failure.reason)
            (gave_up if attempts >= policy.max_attempts else failed).append(entry)
            if attempts == 1 or attempts >= policy.max_attempts:
                _failure_event(tx, failure, attempts, attempts >= policy.max_attempts, now)
        if deferred:
            tx.hand_back([c.id for c in deferred], leased_until=lease_until, at=now)
        next_due = _next_due(tx, channels, policy)
    for failure in failures:
        _count_failure(failure.claim.channel)
    for entry_id, reason in gave_up:
        log.error("delivery %d gave up after %d tries: %s", entry_id, policy.max_attempts, reason)
    return DeliveryReport(
        delivered=tuple(c.id for c in delivered),
        failed=tuple(failed),
        gave_up=tuple(gave_up),
        deferred=tuple(c.id for c in deferred),
        next_due=next_due,
    )


def _failure_event(tx: Tx, failure: _Failure, attempts: int, gave_up: bool, now: datetime) -> None:
    """An `alert_failed` event on the alert's deployment, at a row's first failed try and
    when it gives up: the history shows that an alert did not arrive, and why."""
    claim = failure.claim
    kind = str(claim.payload.get("kind", "?"))
    then = f"; gave up after {attempts} tries" if gave_up else "; it will be tried again"
    tx.insert_event(
        deployment_id=tx.event_deployment_id(claim.event_id),
        action="alert_failed",
        trigger="notify",
        actor="controller",
        reason=f"the {kind} alert to {claim.channel} failed: {failure.reason}{then}"[:ERROR_LIMIT],
        at=now,
        details={
            "channel": claim.channel,
            "channel_kind": channel_kind(claim.channel),
            "delivery": claim.id,
            "event": claim.event_id,
            "attempts": attempts,
            "gave_up": gave_up,
        },
    )


def _next_due(tx: Tx, channels: list[str], policy: RetryPolicy) -> datetime | None:
    """When the first row of these channels falls due (see `Tx.next_due`)."""
    at = tx.next_due(channels=channels, max_attempts=policy.max_attempts)
    return None if at is None else utc(at)
