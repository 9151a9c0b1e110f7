"""The store's repositories on both databases: the statements the gateway, the outbox and the
leader election moved into the store, and the keyword forms of the rollout writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mlops.errors import LeaseLost
from mlops.records import Deployment
from mlops.store import Store
from mlops.store.leases import Fence, acquire_lease, fenced, give_up_lease
from mlops.store.measurements import LoggedAnswer, MeasurementRecord
from tests.server import eventually

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.dispose()


def _deployment(store: Store, name: str = "fraud-api") -> Deployment:
    with store.write() as tx:
        return tx.create_deployment(name, T0)


def _event(store: Store, deployment: Deployment) -> int:
    with store.write() as tx:
        return tx.insert_event(
            deployment_id=deployment.id,
            action="deploy",
            trigger="manual",
            actor="me",
            reason=None,
            at=T0,
        )


def _tally(deployment_id: int, ended_at: datetime) -> MeasurementRecord:
    return MeasurementRecord(
        deployment_id=deployment_id,
        revision=1,
        role="live",
        worker="w1",
        started_at=ended_at - timedelta(seconds=1),
        ended_at=ended_at,
        requests=3,
        errors={"model": 1},
        latency={"4": 3},
        predictions={"a": 2, "b": 1},
    )


def test_measurements_and_answers_are_written_read_and_pruned(store: Store) -> None:
    dep = _deployment(store)
    with store.write() as tx:
        tx.add_measurements([_tally(dep.id, T0), _tally(dep.id, T0 + timedelta(hours=2))])
        tx.log_answers(
            [
                LoggedAnswer(dep.id, "r1", 1, "live", [1.0], T0),
                LoggedAnswer(dep.id, "r1", 2, "live", [2.0], T0),  # the first answer wins
                LoggedAnswer(dep.id, "r2", 1, "live", [3.0], T0 + timedelta(hours=2)),
            ]
        )
        tx.add_measurements([])
        tx.log_answers([])
    with store.write() as tx:
        assert tx.add_label(dep.id, "r1", 1, T0) == "accepted"
        assert tx.add_label(dep.id, "r9", 1, T0) == "unserved"
    with store.read() as tx:
        rows = tx.measurement_rows(dep.id, T0 - timedelta(hours=1))
        labelled = tx.labelled_predictions(dep.id, T0 - timedelta(hours=1))
    assert sorted(r.ended_at for r in rows) == [T0, T0 + timedelta(hours=2)]
    assert rows[0].errors == {"model": 1}
    assert rows[0].latency == {"4": 3}
    assert labelled == [(1, "live", [1.0], 1)]
    with store.write() as tx:
        tx.prune_measurements(before=T0 + timedelta(hours=1))
    with store.read() as tx:
        rows = tx.measurement_rows(dep.id, T0 - timedelta(hours=1))
        assert [r.ended_at for r in rows] == [T0 + timedelta(hours=2)]
        assert tx.labelled_predictions(dep.id, T0 - timedelta(hours=1)) == []
    with store.write() as tx:
        assert tx.add_label(dep.id, "r1", 1, T0) == "unserved"  # its answer was pruned
        assert tx.add_label(dep.id, "r2", 1, T0) == "accepted"


def test_outbox_rows_are_claimed_leased_and_marked(store: Store) -> None:
    dep = _deployment(store)
    event = _event(store, dep)
    with store.write() as tx:
        first = tx.enqueue_alert(event_id=event, channel="log:a", payload={"kind": "x"}, due=T0)
        second = tx.enqueue_alert(event_id=event, channel="log:a", payload={"kind": "y"}, due=T0)
        other = tx.enqueue_alert(
            event_id=event, channel="log:b", payload={}, due=T0 + timedelta(minutes=1)
        )
        assert tx.event_deployment_id(event) == dep.id
    with store.write() as tx:
        due = tx.due_rows(channels=["log:a", "log:b"], now=T0, limit=1, max_attempts=3)
        assert [(r.id, r.channel, r.payload, r.attempts) for r in due] == [
            (first, "log:a", {"kind": "x"}, 0)
        ]
        assert tx.first_live_ids(
            channels=["log:a", "log:b"], excluding=[first], max_attempts=3
        ) == {"log:a": second, "log:b": other}
        lease_until = T0 + timedelta(seconds=30)
        tx.lease_rows([first, second], until=lease_until)
        assert tx.next_due(channels=["log:a"], max_attempts=3) == lease_until
    with store.write() as tx:
        tx.mark_delivered([first], at=T0)
        tx.mark_failed(second, leased_until=lease_until, error="boom", retry_at=T0)
        tx.hand_back([other], leased_until=lease_until, at=T0)  # not held by this lease
    with store.read() as tx:
        rows = {r.id: r for r in tx.undelivered_rows()}
        assert tx.undelivered_channels() == {"log:a", "log:b"}
    assert sorted(rows) == [second, other]
    assert (rows[second].attempts, rows[second].last_error) == (1, "boom")
    assert rows[other].next_attempt_at == T0 + timedelta(minutes=1)
    with store.read() as tx:
        assert tx.next_due(channels=["log:a"], max_attempts=1) is None  # it gave up
    with store.write() as tx:
        assert tx.prune_outbox(before=T0) == 0
        assert tx.prune_outbox(before=T0 + timedelta(seconds=1)) == 1


def test_a_lease_has_one_holder_until_it_expires_or_is_given_up(store: Store) -> None:
    first = acquire_lease(store, name="controller", holder="a", ttl_s=60)
    assert first == Fence("controller", "a", 1)
    assert acquire_lease(store, name="controller", holder="b", ttl_s=60) is None
    assert acquire_lease(store, name="controller", holder="a", ttl_s=60) == first  # renewed
    with store.read() as tx:
        lease = tx.lease("controller")
        now = tx.database_now()
        assert tx.lease("other") is None
    assert lease is not None
    assert (lease.holder, lease.epoch) == ("a", 1)
    assert timedelta(seconds=50) < lease.expires_at - now <= timedelta(seconds=60)
    give_up_lease(store, name="controller", holder="b")  # not b's to give up
    assert acquire_lease(store, name="controller", holder="b", ttl_s=60) is None
    give_up_lease(store, name="controller", holder="a")
    assert acquire_lease(store, name="controller", holder="b", ttl_s=0.2) == Fence(
        "controller", "b", 2
    )
    # Timed by the database's clock: once b's 0.2 s have passed there, a takes over.
    taken = eventually(lambda: acquire_lease(store, name="controller", holder="a", ttl_s=60), bool)
    assert taken == Fence("controller", "a", 3)


def test_a_holder_cut_off_writes_nothing_once_another_took_over(store: Store) -> None:
    dep = _deployment(store)
    old = acquire_lease(store, name="controller", holder="a", ttl_s=0.2)
    assert old is not None
    with fenced(old), store.write() as tx:  # while a holds the lease, its writes go through
        tx.bump_change_seq()
    new = eventually(lambda: acquire_lease(store, name="controller", holder="b", ttl_s=60), bool)
    assert new is not None
    assert new.epoch == old.epoch + 1
    with fenced(old), pytest.raises(LeaseLost, match="epoch 1"), store.write() as tx:
        tx.create_deployment("written-by-a", T0)
    with fenced(new), store.write() as tx:
        tx.create_deployment("written-by-b", T0)
    with store.read() as tx:
        assert tx.deployment("written-by-a") is None
        assert tx.deployment("written-by-b") is not None
        assert tx.deployment(dep.name) is not None
    # a's lease ran out, b's did not: a cannot take it back, and its fence stays stale.
    assert acquire_lease(store, name="controller", holder="a", ttl_s=60) is None
    with fenced(old), pytest.raises(LeaseLost), store.write() as tx:
        tx.bump_change_seq()


def test_update_rollout_changes_only_the_columns_given(store: Store) -> None:
    dep = _deployment(store)
    with store.write() as tx:
        rollout_id = tx.insert_rollout(
            dep,
            candidate_revision=1,
            stable_revision=None,
            strategy="canary",
            spec={"strategy": "canary"},
            phase="progressing",
            step_index=0,
            state={},
            started_at=T0,
            updated_at=T0,
        )
        tx.update_rollout(rollout_id, step_index=2, updated_at=T0 + timedelta(seconds=1))
        tx.update_rollout(rollout_id)
        tx.insert_command(dep, kind="promote", args={}, actor="me", reason=None, created_at=T0)
    with store.write() as tx:
        model_id = tx.model_id("fraud", create_at=T0, lock=True)
        assert model_id is not None
        version_id = tx.insert_version(
            model_id,
            tx.allocate_version(model_id),
            flavor="sklearn",
            artifact_sha256="0" * 64,
            artifact_kind="file",
            size_bytes=1,
            signature={},
            tags={},
            source=None,
            trusted=True,
            status="ready",
            created_at=T0,
            created_by="me",
        )
        found = tx.deployment(dep.name, lock=True)
        assert found is not None
        event = tx.insert_event(
            deployment_id=dep.id, action="deploy", trigger="manual", actor="me", reason=None, at=T0
        )
        tx.append_release(
            found,
            components={"model": version_id},
            status="candidate",
            strategy="canary",
            source_revision=None,
            changes=[],
            event_id=event,
            actor="me",
            at=T0,
        )
    with store.read() as tx:
        found = tx.deployment(dep.name)
        assert found is not None
        rollout = tx.active_rollout(found)
        commands = tx.pending_commands(dep.id)
    assert rollout is not None
    assert (rollout.phase, rollout.step_index, rollout.ended_at) == (
        "progressing",
        2,
        None,
    )
    assert rollout.updated_at == T0 + timedelta(seconds=1)
    assert [(c.kind, c.actor) for c in commands] == [("promote", "me")]


def test_all_deployments_are_read_with_no_limit(store: Store) -> None:
    for i in range(3):
        _deployment(store, f"d{i}")
    with store.read() as tx:
        assert [d.name for d in tx.deployments()] == ["d0", "d1"]
        assert [d.name for d in tx.deployments(limit=None)] == ["d0", "d1", "d2"]


def test_the_change_feed_sees_every_bump(store: Store) -> None:
    with store.changes.polling() as read_seq:
        before = read_seq()
        with store.write() as tx:
            tx.bump_change_seq()
        assert read_seq() == before + 1
    assert store.changes.pushed == (store.dialect == "postgresql")
    if not store.changes.pushed:
        return

    async def notified() -> tuple[int, int | None, int]:
        async with store.changes.listening() as listener:
            with store.write() as tx:
                bumped = tx.bump_change_seq()
            return bumped, await listener.wait(30.0), await listener.change_seq()

    bumped, notified_seq, read = asyncio.run(notified())
    assert notified_seq == bumped == read  # the notification carries the change number
