"""Three gateway hosts, two controller hosts and a PostgreSQL host behind HAProxy, each in a
network namespace of its own (tests/hosts.py): rollouts judged and rolled back across hosts,
a host killed under load, partitions of a gateway and of the leading controller."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mlops import Client
from mlops.store import schema as t
from tests.hosts import HEALTH_FALL, HEALTH_INTER_MS, Cluster, Load, have_tools
from tests.models import training_data
from tests.server import eventually

missing = have_tools()
if missing is not None:
    if os.environ.get("CI"):
        raise RuntimeError(f"the many-hosts harness cannot run here: {missing}")
    pytest.skip(f"the many-hosts harness cannot run here: {missing}", allow_module_level=True)

ROWS = training_data()[0][:8].tolist()
SETTLE_S = 90.0
CANARY_HOLD = {
    "strategy": "canary",
    "steps": [{"set_weight": 50}, {"pause": {}}],
    # Enough of the candidate's requests that every host has flushed its figures before the
    # verdict (each flushes every 0.2 s while a split is judged).
    "analysis": {"latency_tolerance": None, "min_samples": 400},
    "progress_deadline": "5m",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("hosts")) as made:
        try:
            made.wait_gateways()
            made.wait_balanced()
        except BaseException:
            print(made.logs())
            raise
        yield made


@pytest.fixture(scope="module")
def admin(cluster: Cluster, model_files: dict[str, Path]) -> Iterator[Client]:
    with Client(cluster.local_store_url, home=cluster.root / "homes" / "admin") as client:
        client.register("lr", model_files["joblib"], trust=True)  # lr:1
        client.register("lr", model_files["fails_live"], trust=True)  # lr:2, fails on traffic
        client.register("lr", model_files["joblib2"], trust=True)  # lr:3, good
        yield client


def views(cluster: Cluster, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """/v1/gateway of each gateway host, asked directly (not through the balancer)."""
    out = {}
    with cluster.inside():
        for name in names or cluster.gateway_names:
            out[name] = httpx.get(f"{cluster.gateway_url(name)}/v1/gateway", timeout=10).json()
    return out


def weights(view: dict[str, Any], deployment: str) -> dict[str, float]:
    route = view["deployments"].get(deployment)
    return {} if route is None else dict(route["split"]["weights"])


def all_serve(cluster: Cluster, deployment: str, want: dict[str, float]) -> None:
    eventually(
        lambda: views(cluster),
        lambda found: all(weights(v, deployment) == want for v in found.values()),
        SETTLE_S,
    )


def actions(client: Client, deployment: str) -> list[str]:
    return [e.action for e in reversed(client.events(deployment, limit=200))]


def test_a_bad_canary_over_three_hosts_is_rolled_back_on_all_three(
    cluster: Cluster, admin: Client
) -> None:
    admin.deploy("fraud", model="lr:1")
    all_serve(cluster, "fraud", {"1": 100.0})
    with Load(cluster, "fraud", ROWS) as load:
        admin.deploy("fraud", model="lr:2", rollout=CANARY_HOLD)
        ended = eventually(
            lambda: admin.history("fraud", limit=1)[0],
            lambda release: release.status == "rolled_back",
            SETTLE_S,
        )
        assert ended.revision == 2
        # The rollback reaches every host: each routes all traffic to revision 1 again.
        all_serve(cluster, "fraud", {"1": 100.0})
        after = time.monotonic()
        eventually(lambda: load.since(after), lambda seen: sum(seen.values()) >= 60, SETTLE_S)
        assert set(load.since(after)) == {(200, 1)}
    rollback = next(e for e in admin.events("fraud", limit=50) if e.action == "rollback")
    # The controller judged what all three hosts measured: each wrote the candidate's figures.
    with admin._service.store.read() as tx:
        workers = {
            row.worker
            for row in tx.conn.execute(
                select(t.measurements.c.worker).where(
                    t.measurements.c.revision == 2, t.measurements.c.ended_at <= rollback.at
                )
            )
        }
    gateway_workers = {view["worker"] for view in views(cluster).values()}
    assert workers == gateway_workers
    assert len(gateway_workers) == 3


def test_a_gateway_host_killed_under_load_is_drained_and_requests_go_on(
    cluster: Cluster, admin: Client
) -> None:
    admin.deploy("steady", model="lr:1")
    all_serve(cluster, "steady", {"1": 100.0})
    connections = 6
    try:
        with Load(cluster, "steady", ROWS, connections) as load:
            eventually(lambda: load.since(0), lambda seen: seen[(200, 1)] >= 60, SETTLE_S)
            killed_at = time.monotonic()
            cluster.kill("gw3")
            eventually(lambda: load.since(killed_at), lambda seen: seen[(200, 1)] >= 300, SETTLE_S)
        failed = sum(n for (status, _), n in load.since(killed_at).items() if status != 200)
        # With `retries 1` and `option redispatch`, a request refused by the dead host goes
        # to another one; only the requests in flight on gw3 when it died fail, one per client
        # connection at most. Without them, every request the balancer sent to gw3 in the
        # fall x inter it takes to mark it down would fail.
        assert failed <= connections, load.since(killed_at)
        down = (cluster.root / "lb.log").read_text()
        assert "gw3 is DOWN" in down
        assert HEALTH_FALL * HEALTH_INTER_MS <= 2000
    finally:
        cluster.start_gateway("gw3")
        cluster.wait_gateways(["gw3"])
        cluster.wait_balanced()


def leader(cluster: Cluster, client: Client) -> tuple[str, int]:
    """The controller host that holds the lease, and the lease's epoch."""
    from tests.hosts import pids_of

    def find() -> tuple[str, int] | None:
        with client._service.store.read() as tx:
            lease = tx.lease("controller")
        if lease is None:
            return None
        pid = int(lease.holder.split(":")[1])
        for name in cluster.controller_names:
            if pid in pids_of(cluster.hosts[name].netns):
                return name, lease.epoch
        return None

    found = eventually(find, lambda held: held is not None, SETTLE_S)
    assert found is not None
    return found


def no_repeats(client: Client, deployment: str) -> None:
    """No event of the deployment is there twice: every action was taken once."""
    events = [
        (e.action, e.trigger, e.from_revision, e.to_revision, e.reason)
        for e in client.events(deployment, limit=200)
    ]
    assert sorted(events) == sorted(set(events)), Counter(events).most_common(3)


def test_the_leading_controller_cut_off_is_replaced_and_no_action_is_taken_twice(
    cluster: Cluster, admin: Client
) -> None:
    admin.deploy("lead", model="lr:1")
    all_serve(cluster, "lead", {"1": 100.0})
    first, epoch = leader(cluster, admin)
    cluster.partition(first, "db")
    try:
        admin.deploy("lead", model="lr:3", rollout=CANARY_HOLD)
        # The other controller takes over once the lease ran out by the database's clock.
        second, taken = eventually(
            lambda: leader(cluster, admin), lambda held: held[0] != first, SETTLE_S
        )
        assert taken > epoch
        all_serve(cluster, "lead", {"1": 50.0, "2": 50.0})
        admin.promote("lead")
        eventually(
            lambda: admin.status("lead")[0],
            lambda status: status.revision == 2 and status.phase != "progressing",
            SETTLE_S,
        )
    finally:
        cluster.heal(first, "db")
    # The cut-off controller comes back: it may neither lead nor act on what it last saw.
    back = cluster.hosts[first].address

    def sessions_from_first() -> int:
        with admin._service.store.read() as tx:
            return int(
                tx.conn.exec_driver_sql(
                    f"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{back}'"
                ).scalar_one()
            )

    eventually(sessions_from_first, lambda n: n > 0, SETTLE_S)
    assert leader(cluster, admin)[0] == second
    all_serve(cluster, "lead", {"2": 100.0})
    no_repeats(admin, "lead")


def test_a_gateway_cut_off_during_a_rollback_serves_only_the_stable_release(
    cluster: Cluster, admin: Client
) -> None:
    admin.deploy("part", model="lr:1")
    admin.deploy("part", model="lr:2", rollout=CANARY_HOLD, force=True)  # quarantined above
    all_serve(cluster, "part", {"1": 50.0, "2": 50.0})
    cluster.partition("gw2", "db")
    try:
        with Load(cluster, "part", ROWS):
            eventually(
                lambda: admin.history("part", limit=1)[0],
                lambda release: release.status == "rolled_back",
                SETTLE_S,
            )
        # gw2 never heard of the rollback; past the bound it serves the stable release alone.
        cut = eventually(
            lambda: views(cluster, ["gw2"])["gw2"], lambda v: v["store"]["cut_off"], SETTLE_S
        )
        assert weights(cut, "part") == {"1": 100.0}
        with cluster.inside(), httpx.Client(base_url=cluster.gateway_url("gw2")) as http:
            answers = [
                http.post("/v1/models/part:predict", json={"instances": [row]}, timeout=10)
                for row in ROWS * 5
            ]
            serving = http.get("/v1/gateway/serving", timeout=10).status_code
        assert {(a.status_code, a.headers["x-release-revision"]) for a in answers} == {(200, "1")}
        assert serving == 200  # still in the balancer's rotation
    finally:
        cluster.heal("gw2", "db")
    with admin._service.store.read() as tx:
        seq = tx.change_seq()
    eventually(
        lambda: views(cluster, ["gw2"])["gw2"],
        lambda v: not v["store"]["cut_off"] and v["seq"] >= seq,
        SETTLE_S,
    )
    all_serve(cluster, "part", {"1": 100.0})


def test_postgresql_restarted_mid_rollout_loses_and_doubles_nothing(
    cluster: Cluster, admin: Client
) -> None:
    spec = {
        "strategy": "canary",
        "steps": [
            {"set_weight": 20},
            {"pause": {"requests": 40}},
            {"set_weight": 60},
            {"pause": {"requests": 40}},
        ],
        "analysis": {"latency_tolerance": None},
        "progress_deadline": "5m",
        "notify": [{"log": True}],
    }
    admin.deploy("restart", model="lr:1")
    all_serve(cluster, "restart", {"1": 100.0})
    with Load(cluster, "restart", ROWS):
        admin.deploy("restart", model="lr:3", rollout=spec)
        all_serve(cluster, "restart", {"1": 80.0, "2": 20.0})
        cluster.restart_postgres()
        eventually(
            lambda: admin.status("restart")[0],
            lambda status: status.revision == 2 and status.phase != "progressing",
            SETTLE_S,
        )
    assert admin.history("restart", limit=1)[0].status == "stable"
    no_repeats(admin, "restart")
    # Each of the rollout's events gave one alert on the log channel, delivered once.
    events = {e.id for e in admin.events("restart", limit=200)}

    def alerts() -> list[Any]:
        with admin._service.store.read() as tx:
            rows = tx.conn.execute(select(t.outbox).where(t.outbox.c.event_id.in_(events)))
            return list(rows)

    delivered = eventually(
        alerts, lambda rows: rows and all(r.delivered_at is not None for r in rows), SETTLE_S
    )
    keys = [(r.event_id, r.channel) for r in delivered]
    assert len(keys) == len(set(keys))
    assert {r.payload.get("kind") for r in delivered} >= {"promoted"}
