"""Notifiers against a real HTTP receiver on loopback, and the outbox on SQLite and PostgreSQL.

Time is injected: backoff and leases are checked by moving `now`, never by sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select

from mlops import notify as notify_pkg
from mlops.notify import (
    Alert,
    DeliveryFailed,
    LogNotifier,
    Notification,
    Notifier,
    RecordingNotifier,
    RetryPolicy,
    SlackNotifier,
    Subscription,
    WebhookNotifier,
    close_notifiers,
    deliver_due,
    enqueue,
    notifiers_for,
    subscriptions_for,
    undelivered,
    verify_signature,
)
from mlops.rollout_spec import NotifySpec
from mlops.store import Store
from mlops.store import schema as t
from tests.server import free_port

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SECRET = "s3cret-for-tests"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rolled_back(deployment: str = "fraud-api", **changes: Any) -> Alert:
    values: dict[str, Any] = {
        "kind": "rolled_back",
        "deployment": deployment,
        "trigger": "analysis",
        "reason": "error rate 9.1% vs 1.0%",
        "evidence": ("e-value 41.2 >= 20 after 812 requests",),
        "from_revision": 5,
        "to_revision": 4,
        "at": T0,
        "details": {"candidate": {"model": "fraud", "version": 7}},
    }
    return Alert(**{**values, **changes})


# a real receiver


@dataclass(frozen=True)
class Receipt:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def delivery(self) -> int:
        return int(self.headers["x-mlops-delivery"])

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers as it is told."""

    port: int = field(default_factory=free_port)
    status: int = 200
    delay: float = 0.0
    fail_every: int = 0
    """Answer 500 to every n-th request (0: never)."""
    receipts: list[Receipt] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[int]:
        """Delivery ids answered with a 2xx, in the order they arrived."""
        with self._lock:
            return [r.delivery for r in self.receipts if 200 <= r.status < 300]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    n = len(receiver.receipts) + 1
                    status = receiver.status
                    if receiver.fail_every and n % receiver.fail_every == 0:
                        status = 500
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.receipts.append(Receipt(headers, body, status))
                if receiver.delay:
                    receiver._stopping.wait(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and hung up: expected here

        self._stopping.clear()
        self._server = Server(("127.0.0.1", self.port), Handler)
        server = self._server
        threading.Thread(target=lambda: server.serve_forever(0.05), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._stopping.set()
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.dispose()


def notification(alert: Alert | None = None, delivery: int = 17) -> Notification:
    return Notification(delivery, 42, "webhook:test", alert or rolled_back())


def queue(store: Store, channels: list[str], alert: Alert | None = None) -> list[int]:
    """An event and its outbox rows, in one transaction, as the controller writes them."""
    alert = alert or rolled_back()
    with store.write() as tx:
        event_id = tx.insert_event(
            deployment_id=None,
            action="rollback",
            trigger=alert.trigger,
            actor=alert.actor,
            reason=alert.reason,
            at=alert.at,
        )
        return enqueue(tx, event_id, channels, alert)


def outbox_rows(store: Store) -> dict[int, dict[str, Any]]:
    with store.read() as tx:
        return {
            row._mapping["id"]: dict(row._mapping)
            for row in tx.conn.execute(select(t.outbox).order_by(t.outbox.c.id))
        }


# the public API


def test_public_api_is_what_all_says() -> None:
    public = {
        name
        for name in dir(notify_pkg)
        if not name.startswith("_") and not isinstance(getattr(notify_pkg, name), types.ModuleType)
    }
    assert public == set(notify_pkg.__all__)
    for fake in (RecordingNotifier(), LogNotifier()):
        assert isinstance(fake, Notifier)


# notifiers


def test_webhook_signature_verifies_with_the_secret(receiver: Receiver) -> None:
    with WebhookNotifier(receiver.url, SECRET) as hook:
        hook.send(notification(delivery=17))
    (receipt,) = receiver.receipts
    header = receipt.headers["x-mlops-signature"]
    expected = "sha256=" + hmac.new(SECRET.encode(), receipt.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(header, expected)
    assert verify_signature(receipt.body, SECRET, header)
    assert not verify_signature(receipt.body, "another secret", header)
    assert not verify_signature(receipt.body + b" ", SECRET, header)
    assert not verify_signature(receipt.body, SECRET, "sha256=é")
    assert not verify_signature(receipt.body, SECRET, None)
    assert receipt.headers["x-mlops-delivery"] == "17"
    assert receipt.headers["x-mlops-event"] == "rolled_back"
    assert receipt.headers["content-type"] == "application/json"
    assert receipt.json() == {
        "id": 17,
        "event_id": 42,
        "kind": "rolled_back",
        "deployment": "fraud-api",
        "trigger": "analysis",
        "actor": "controller",
        "reason": "error rate 9.1% vs 1.0%",
        "evidence": ["e-value 41.2 >= 20 after 812 requests"],
        "from": 5,
        "to": 4,
        "at": "2026-11-23T09:00:00+00:00",
        "details": {"candidate": {"model": "fraud", "version": 7}},
    }


def test_webhook_without_a_secret_sends_no_signature(receiver: Receiver) -> None:
    with WebhookNotifier(receiver.url) as hook:
        hook.send(notification())
    assert "x-mlops-signature" not in receiver.receipts[0].headers


def test_slack_payload_is_an_incoming_webhook_message(receiver: Receiver) -> None:
    alert = rolled_back(evidence=("p99 <b>412 ms</b> & rising",))
    with SlackNotifier(receiver.url) as slack:
        slack.send(notification(alert, delivery=9))
    payload = receiver.receipts[0].json()
    assert payload["text"] == (
        ":rotating_light: fraud-api rolled back to revision 4 (analysis): "
        "error rate 9.1% vs 1.0%; p99 <b>412 ms</b> & rising"
    )
    types = [block["type"] for block in payload["blocks"]]
    assert types == ["section", "section", "section", "context"]
    summary, facts, evidence, context = payload["blocks"]
    assert summary["text"]["type"] == "mrkdwn"
    assert "&lt;b&gt;412 ms&lt;/b&gt; &amp; rising" in summary["text"]["text"]
    assert [f["text"] for f in facts["fields"]] == [
        "*Deployment*\nfraud-api",
        "*Revision*\n5 → 4",
        "*Trigger*\nanalysis",
        "*Actor*\ncontroller",
    ]
    assert evidence["text"]["text"].startswith("*Evidence*\n• p99")
    assert "delivery 9" in context["elements"][0]["text"]


@pytest.mark.parametrize("status", [500, 404, 302])
def test_any_answer_but_2xx_is_a_failure(receiver: Receiver, status: int) -> None:
    receiver.status = status
    with WebhookNotifier(receiver.url) as hook, pytest.raises(DeliveryFailed) as failed:
        hook.send(notification())
    assert f"HTTP {status}" in failed.value.reason
    assert "/hook" not in failed.value.reason  # paths can hold secrets (Slack's do)


def test_refused_connection_and_timeout_are_failures(receiver: Receiver) -> None:
    refused = f"http://127.0.0.1:{free_port()}/hook"
    with WebhookNotifier(refused) as hook, pytest.raises(DeliveryFailed, match="unreachable"):
        hook.send(notification())
    receiver.delay = 2.0
    started = time.monotonic()
    with (
        WebhookNotifier(receiver.url, timeout=0.2) as hook,
        pytest.raises(DeliveryFailed, match="timed out"),
    ):
        hook.send(notification())
    assert time.monotonic() - started < 1.5


def test_log_notifier_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mlops.alerts"):
        LogNotifier().send(notification())
    (record,) = caplog.records
    assert record.name == "mlops.alerts"
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        ":rotating_light: fraud-api rolled back to revision 4 (analysis): error rate 9.1%"
    )
    assert "\n" not in record.getMessage()


def test_subscriptions_pick_channels_by_kind_and_deployment() -> None:
    entries: list[Subscription | NotifySpec] = [
        NotifySpec(webhook="http://127.0.0.1:9000/hook", events=["rolled_back"]),
        NotifySpec(slack="https://hooks.slack.com/services/T0/B0/XYZ"),
        NotifySpec(log=True, events=["*"]),
        NotifySpec(webhook="http://127.0.0.1:9000/hook", events=["promoted"]),
        Subscription("log", deployments=frozenset({"other"})),
    ]
    rolled = subscriptions_for(entries, "fraud-api", "rolled_back")
    hook, slack, log = rolled
    assert hook.startswith("webhook:http://127.0.0.1:9000/")
    assert slack.startswith("slack:https://hooks.slack.com/")
    assert "XYZ" not in slack  # the Slack URL is a secret
    assert log == "log"
    assert subscriptions_for(entries, "fraud-api", "promoted") == [slack, "log", hook]
    assert subscriptions_for(entries, "fraud-api", "step") == ["log"]
    assert subscriptions_for(entries[:2], "fraud-api", "resumed") == []


def test_notifiers_for_reads_the_secret_from_the_environment(receiver: Receiver) -> None:
    entry = NotifySpec(webhook=receiver.url, secret_env="HOOK_SECRET")
    (unset,) = notifiers_for([entry], env={}).values()  # fails alone, each try (issue 10)
    with pytest.raises(DeliveryFailed, match="HOOK_SECRET is not set"):
        unset.send(notification())
    assert receiver.receipts == []
    notifiers = notifiers_for([entry, NotifySpec(log=True)], env={"HOOK_SECRET": SECRET})
    try:
        (channel,) = subscriptions_for([entry], "fraud-api", "rolled_back")
        assert set(notifiers) == {channel, "log"}
        notifiers[channel].send(notification())
    finally:
        close_notifiers(notifiers)
    receipt = receiver.receipts[0]
    assert verify_signature(receipt.body, SECRET, receipt.headers["x-mlops-signature"])


# the outbox


def test_enqueue_in_a_transaction_that_rolls_back_leaves_no_row(store: Store) -> None:
    def change_that_fails() -> None:
        with store.write() as tx:
            event_id = tx.insert_event(
                deployment_id=None,
                action="rollback",
                trigger="analysis",
                actor="c",
                reason="x",
                at=T0,
            )
            assert len(enqueue(tx, event_id, ["log", "webhook:a"], rolled_back())) == 2
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert outbox_rows(store) == {}
    with store.read() as tx:
        assert tx.conn.execute(select(func.count()).select_from(t.events)).scalar_one() == 0
    committed = queue(store, ["log", "webhook:a", "log"])
    assert len(committed) == 2  # one row per channel
    recording = RecordingNotifier()
    report = deliver_due(store, {"log": recording}, at(0))
    assert report.delivered == (committed[0],)
    assert [m.alert for m in recording.sent] == [rolled_back()]


def test_a_receiver_that_is_down_then_back_gets_each_event_once_in_order(
    store: Store,
) -> None:
    down = Receiver()  # not started: connection refused
    hook = WebhookNotifier(down.url, SECRET, timeout=2.0)
    notifiers: dict[str, Notifier] = {"hook": hook}
    ids = [queue(store, ["hook"], rolled_back(to_revision=n))[0] for n in (1, 2, 3)]
    try:
        # refused: the first row fails, the channel's later rows wait behind it
        report = deliver_due(store, notifiers, at(0))
        assert [i for i, _ in report.failed] == [ids[0]]
        assert "unreachable" in report.failed[0][1]
        assert report.deferred == (ids[1], ids[2])
        assert report.next_due == at(1)
        rows = outbox_rows(store)
        assert (rows[ids[0]]["attempts"], rows[ids[0]]["next_attempt_at"]) == (1, at(1))
        assert [rows[i]["attempts"] for i in ids[1:]] == [0, 0]

        # backoff: nothing is tried before it is due
        assert deliver_due(store, notifiers, at(0.9)).failed == ()
        assert deliver_due(store, notifiers, at(1)).failed[0][0] == ids[0]  # 2nd try
        assert outbox_rows(store)[ids[0]]["next_attempt_at"] == at(1 + 2)
        assert deliver_due(store, notifiers, at(2.9)).failed == ()

        # up but failing: answers 500
        down.status = 500
        down.start()
        report = deliver_due(store, notifiers, at(3))
        assert "HTTP 500" in report.failed[0][1]
        assert outbox_rows(store)[ids[0]]["next_attempt_at"] == at(3 + 4)
        assert deliver_due(store, notifiers, at(6.9)).failed == ()

        # back: everything goes, once, in order of id
        down.status = 200
        report = deliver_due(store, notifiers, at(7))
        assert report.delivered == tuple(ids)
        assert report.next_due is None
        assert down.delivered() == ids
        assert [r.status for r in down.receipts] == [500, 200, 200, 200]
        for receipt in down.receipts:
            assert verify_signature(receipt.body, SECRET, receipt.headers["x-mlops-signature"])
        rows = outbox_rows(store)
        assert [rows[i]["attempts"] for i in ids] == [4, 1, 1]
        assert all(rows[i]["delivered_at"] == at(7) for i in ids)
        assert rows[ids[0]]["last_error"] is None

        # and never again
        assert deliver_due(store, notifiers, at(10_000)) == type(report)()
        assert down.delivered() == ids
    finally:
        hook.close()
        down.stop()


def test_a_timeout_counts_as_a_failed_try(store: Store, receiver: Receiver) -> None:
    receiver.delay = 1.0
    (row,) = queue(store, ["hook"])
    with WebhookNotifier(receiver.url, timeout=0.2) as hook:
        report = deliver_due(store, {"hook": hook}, at(0))
        assert [i for i, _ in report.failed] == [row]
        assert "timed out" in report.failed[0][1]
        assert outbox_rows(store)[row]["attempts"] == 1
        receiver.delay = 0.0
        assert deliver_due(store, {"hook": hook}, at(1)).delivered == (row,)
    # The receiver got the timed-out request too: the same delivery id twice, which is why
    # receivers dedupe on X-Mlops-Delivery.
    assert [r.delivery for r in receiver.receipts] == [row, row]


def test_a_row_that_keeps_failing_gives_up_and_stays_visible(store: Store) -> None:
    policy = RetryPolicy(max_attempts=3)
    first, second = (queue(store, ["rec"])[0] for _ in range(2))
    recording = RecordingNotifier()
    recording.failing = "HTTP 400 from https://example.invalid: invalid_payload"
    notifiers: dict[str, Notifier] = {"rec": recording}
    assert deliver_due(store, notifiers, at(0), policy=policy).failed[0][0] == first
    assert deliver_due(store, notifiers, at(1), policy=policy).failed[0][0] == first
    report = deliver_due(store, notifiers, at(3), policy=policy)
    assert report.gave_up == ((first, recording.failing),)
    with store.read() as tx:
        entries = undelivered(tx, max_attempts=policy.max_attempts)
    assert [(e.id, e.gave_up, e.attempts) for e in entries] == [
        (first, True, 3),
        (second, False, 0),
    ]
    assert entries[0].last_error == recording.failing
    assert entries[0].kind == "rolled_back"
    # the channel goes on with its next row; the failed one is not tried again
    recording.failing = None
    report = deliver_due(store, notifiers, at(10_000), policy=policy)
    assert report.delivered == (second,)
    assert [m.id for m in recording.sent] == [second]


def test_a_deliverer_that_dies_mid_send_gives_its_rows_back_after_the_lease(
    store: Store,
) -> None:
    class Dying:
        def send(self, message: Notification) -> None:
            raise KeyboardInterrupt  # the process is going away: nothing is recorded

    (row,) = queue(store, ["rec"])
    with pytest.raises(KeyboardInterrupt):
        deliver_due(store, {"rec": Dying()}, at(0))
    recording = RecordingNotifier()
    assert deliver_due(store, {"rec": recording}, at(29)).delivered == ()
    assert deliver_due(store, {"rec": recording}, at(30)).delivered == (row,)
    assert outbox_rows(store)[row]["attempts"] == 1


def test_rows_of_channels_without_a_notifier_wait(store: Store) -> None:
    hook_row, log_row = queue(store, ["webhook:gone", "log"])
    recording = RecordingNotifier()
    report = deliver_due(store, {"log": recording}, at(0))
    assert report.delivered == (log_row,)
    assert report.next_due is None
    assert outbox_rows(store)[hook_row]["delivered_at"] is None


def test_no_database_lock_is_held_while_sending(store: Store, store_url: str) -> None:
    other = Store(store_url, migrate=False)
    wrote = threading.Event()

    def write_elsewhere() -> None:
        with other.write() as tx:
            tx.insert_event(
                deployment_id=None, action="x", trigger="manual", actor="a", reason=None, at=T0
            )
        wrote.set()

    class Slow:
        def send(self, message: Notification) -> None:
            writer = threading.Thread(target=write_elsewhere)
            writer.start()
            writer.join(timeout=5)

    queue(store, ["slow"])
    try:
        assert deliver_due(store, {"slow": Slow()}, at(0)).delivered
        assert wrote.is_set(), "another writer waited for the deliverer's send"
    finally:
        other.dispose()


def test_racing_deliverers_deliver_each_row_once_in_channel_order(
    store: Store, store_url: str
) -> None:
    a, b = Receiver(fail_every=4, delay=0.005).start(), Receiver(fail_every=5, delay=0.005).start()
    receivers = {"a1": a, "a2": a, "b1": b, "b2": b}
    channels = list(receivers)
    ids: dict[str, list[int]] = {c: [] for c in channels}
    for n in range(40):
        channel = channels[n % len(channels)]
        ids[channel] += queue(store, [channel], rolled_back(to_revision=n))
    policy = RetryPolicy(first_delay_s=0.0, max_delay_s=0.0)  # failures are due again at once
    deadline = time.monotonic() + 15
    errors: list[BaseException] = []
    tries: Counter[int] = Counter()
    workers: set[int] = set()
    ready = threading.Barrier(4)

    def deliverer(index: int) -> None:
        local = Store(store_url, migrate=False)
        hooks: dict[str, Notifier] = {c: WebhookNotifier(r.url) for c, r in receivers.items()}
        try:
            ready.wait(timeout=10)
            while time.monotonic() < deadline:
                report = deliver_due(local, hooks, at(0), limit=2, policy=policy)
                tries.update(i for i, _ in report.failed)
                if report.delivered:
                    workers.add(index)
                with local.read() as tx:
                    if not undelivered(tx, limit=1):
                        return
        except BaseException as exc:
            errors.append(exc)
        finally:
            close_notifiers(hooks)
            local.dispose()

    threads = [threading.Thread(target=deliverer, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    finally:
        a.stop()
        b.stop()
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    for channel, receiver in receivers.items():
        mine = set(ids[channel])
        got = [d for d in receiver.delivered() if d in mine]
        assert Counter(got) == Counter(ids[channel]), "each row delivered exactly once"
        assert got == ids[channel], "in order of id within the channel"
    assert sum(tries.values()) > 0  # the race included retries
    assert len(workers) > 1, "the deliverers shared the work"
    rows = outbox_rows(store)
    assert all(row["delivered_at"] is not None for row in rows.values())
    assert sum(row["attempts"] for row in rows.values()) == 40 + sum(tries.values())
