"""A gateway cut off from its PostgreSQL store (through a relay that stops forwarding, as a
partition does) while the controller, elsewhere, rolls a canary back: once the staleness bound
has passed the gateway serves only the release that was stable when it lost contact, stays in
service, and takes the store's routes again as soon as the partition heals."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from mlops import Client
from mlops.controller.loop import Controller
from tests.conftest import pg_schema_url
from tests.integration.test_controller import error_rate_judge, measure
from tests.models import training_data
from tests.partition import Relay
from tests.server import Traffic, eventually, running_server

CANARY = {"steps": [{"set_weight": 50}, {"pause": {}}]}


@pytest.fixture
def store_url(pg_database: str) -> str:
    return pg_schema_url(pg_database)


@pytest.fixture
def relay(store_url: str) -> Iterator[Relay]:
    url = make_url(store_url)
    with Relay((url.host or "127.0.0.1", url.port or 5432)) as relay:
        yield relay


def through(store_url: str, relay: Relay) -> str:
    return store_url.replace(":5432/", f":{relay.port}/", 1)


def status(server_url: str) -> dict[str, Any]:
    answer = httpx.get(f"{server_url}/v1/gateway", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_a_gateway_cut_off_from_the_store_serves_only_the_stable_release(
    store_url: str, relay: Relay, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    assert ":5432/" in store_url
    home = tmp_path / "home"
    client = Client(store_url, home=home)
    client.register("m", model_files["joblib"], trust=True)
    client.register("m", model_files["joblib2"], trust=True)
    client.deploy("api", model="m:1")
    client.deploy("api", model="m:2", rollout=CANARY, strategy="canary")
    controller = Controller(client._service, error_rate_judge)
    controller.tick()  # the canary's first step: half the traffic to revision 2
    rows = training_data()[0][:4].tolist()
    bodies = [{"instances": [row]} for row in rows]
    with (
        running_server(
            through(store_url, relay), home, "--no-controller", "--max-staleness", "1"
        ) as server,
        Traffic(server.url, "/v1/models/api:predict", bodies) as traffic,
    ):
        eventually(lambda: Counter(traffic.seen), lambda seen: seen[(200, 2)] >= 5)
        relay.cut()
        # The controller, which still reaches the store, rolls the bad canary back.
        measure(client, 2, 30, errors=25)
        eventually(controller.tick, lambda lines: any("rolled back" in line for line in lines), 60)
        assert client.status("api")[0].phase != "progressing"

        # Past the bound the gateway says it is cut off; from then on, only revision 1.
        cut_off = eventually(lambda: status(server.url), lambda s: s["store"]["cut_off"])
        assert cut_off["store"]["silent_s"] > 1.0
        assert cut_off["deployments"]["api"]["split"]["weights"] == {"1": 100.0}
        assert list(cut_off["deployments"]["api"]["targets"]) == ["1"]
        mark = len(traffic.seen)
        eventually(lambda: traffic.since(mark), lambda seen: sum(seen.values()) >= 40)
        assert set(traffic.since(mark)) == {(200, 1)}
        # It stays in service: a load balancer's readiness check still passes.
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200

        relay.heal()
        caught_up = eventually(lambda: status(server.url), lambda s: not s["store"]["cut_off"])
        with client._service.store.read() as tx:
            assert caught_up["seq"] == tx.change_seq()
        assert caught_up["deployments"]["api"]["split"]["weights"] == {"1": 100.0}
        mark = len(traffic.seen)
        eventually(lambda: traffic.since(mark), lambda seen: sum(seen.values()) >= 20)
        assert set(traffic.since(mark)) == {(200, 1)}
    controller.close()
    client.close()


def test_a_process_cut_off_mid_transaction_does_not_hold_its_locks(
    store_url: str, relay: Relay
) -> None:
    import threading

    from sqlalchemy import select

    from mlops.store import Store
    from mlops.store import schema as t

    direct = Store(store_url)
    cut_off = Store(through(store_url, relay), idle_in_transaction_s=0.5)
    try:
        with direct.write() as tx:
            tx.create_deployment("locked", datetime.now(UTC))
        holding = threading.Event()

        def hold_and_hang() -> None:
            # Locks the row, then its connection is cut before it can commit.
            with contextlib.suppress(Exception), cut_off.write() as tx:
                tx.deployment("locked", lock=True)
                relay.cut()
                holding.set()
                tx.bump_change_seq()  # never answered: the relay holds it

        thread = threading.Thread(target=hold_and_hang, daemon=True)
        thread.start()
        assert holding.wait(30)
        # The server ends the idle transaction after 0.5 s: the row can be locked again.
        with direct.write() as tx:
            tx.conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")  # fails, never hangs
            assert tx.deployment("locked", lock=True) is not None
            assert tx.conn.execute(select(t.deployments.c.name)).first() is not None
    finally:
        relay.heal()
        direct.dispose()
        cut_off.dispose()


def test_a_leader_cut_off_mid_tick_does_not_hold_the_lease_row(
    store_url: str, relay: Relay, tmp_path: Path
) -> None:
    import threading

    from mlops.controller.leader import LEASE, controller_service
    from mlops.settings import load_settings
    from mlops.store import Store
    from mlops.store.leases import acquire_lease, fenced

    lease_s = 0.5
    other = Store(store_url)
    settings = load_settings(home=tmp_path, store_url=through(store_url, relay))
    cut_off = controller_service(settings, lease_s).store  # as `mlops controller` opens it
    try:
        fence = acquire_lease(cut_off, name=LEASE, holder="cut-off", ttl_s=lease_s)
        assert fence is not None
        holding = threading.Event()

        def tick_and_hang() -> None:
            # A tick's write holds the lease row; its connection is cut before it commits.
            with contextlib.suppress(Exception), fenced(fence), cut_off.write() as tx:
                relay.cut()
                holding.set()
                tx.bump_change_seq()  # never answered: the relay holds it

        threading.Thread(target=tick_and_hang, daemon=True).start()
        assert holding.wait(30)
        with other.write() as tx:
            # Waits for the cut-off transaction to end: fails if it never does, never hangs.
            tx.conn.exec_driver_sql("SET LOCAL lock_timeout = '60s'")
            tx.take_lease(LEASE, "other", 5.0)  # timed from when it began: may find it held
        with other.write() as tx:
            epoch = tx.take_lease(LEASE, "other", 5.0)
        assert epoch == fence.epoch + 1
    finally:
        relay.heal()
        other.dispose()
        cut_off.dispose()
