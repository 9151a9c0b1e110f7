"""Crash safety as an operator meets it: `mlops serve` and `mlops controller` run as real
processes, are killed with SIGKILL at random moments and started again, while traffic flows
through the gateway and a webhook receiver listens on loopback.

The requirement: kill -9 at any moment, restart, and each rollout continues or rolls back;
the gateway's routes match the store; no notification is lost or sent twice (an outbox).
With PostgreSQL several controllers run and one leads; when the leader dies another takes
over within two lease periods.

Every test ends with the same look at the store (`assert_settled`): one stable release and
no candidate, the rollout in a final phase, revisions without a gap, one event per change,
one outbox row per alert, and the gateway serving what the store routes.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from sqlalchemy import select

from mlops import Client, ComponentRef
from mlops.controller.judge import analysis_judge
from mlops.controller.loop import Controller
from mlops.core.rollout import Judge
from mlops.core.routing import Split
from mlops.notify import verify_signature
from mlops.records import Deployment
from mlops.rollout_spec import load_spec
from mlops.store import Store
from mlops.store import schema as t
from tests.conftest import pg_schema_url
from tests.integration.test_notify import Receiver
from tests.server import (
    MLOPS,
    SETTLE_S,
    STARTUP_S,
    eventually,
    free_port,
    server_env,
    wait_workers,
    workers_in,
)

SEED = 20261123
DEPLOYMENT = "api"
ROW = [0.4, -1.2, 0.3, 0.8, -0.5, 1.1]
TICK_S = 0.1
LEASE_S = 1.0
T = TypeVar("T")


def spec_file(
    folder: Path,
    *,
    pause_s: float = 1.0,
    hold: bool = False,
    notify: list[dict[str, Any]] | None = None,
) -> Path:
    """A canary with short steps: 20 %, a pause, 50 %, a pause, then 100 % (promoted). With
    `hold`, the first pause lasts until `mlops promote`: the test, not the clock, decides how
    long the rollout stays at 20 %."""
    pause = {"duration": f"{pause_s:g}s", "requests": 10}
    first: dict[str, Any] = {} if hold else pause
    spec: dict[str, Any] = {
        "strategy": "canary",
        "steps": [{"set_weight": 20}, {"pause": first}, {"set_weight": 50}, {"pause": pause}],
        # The latency check is for another test: restarts on a busy machine make latency noisy,
        # and a good candidate must not be rolled back for a stall that stable saw too.
        "analysis": {"latency_tolerance": None},
        "progress_deadline": "60s",
    }
    if notify:
        spec["notify"] = notify
    path = folder / f"rollout-{len(list(folder.glob('rollout-*')))}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# processes


class Proc:
    """An `mlops` process in a session of its own: SIGKILL reaches it and every worker it forks,
    as when a machine or a container dies."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self._ended = False
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [MLOPS, *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9, of the whole process group (once: its id is not ours afterwards)."""
        if self._ended:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._ended = True

    def stop(self) -> None:
        """A clean stop (SIGTERM), then SIGKILL for any worker left behind."""
        if not self._ended and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
        self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Site:
    """One store, the `mlops` processes started on it, and reads of what it holds."""

    store_url: str
    home: Path
    models: dict[str, Path]
    procs: list[Proc] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    _store: Store | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**server_env(self.store_url, self.home), "COLUMNS": "200", **self.extra_env}

    def mlops(self, *args: str) -> str:
        """Run one `mlops` command to its end, as a user types it; returns its stdout."""
        done = subprocess.run(
            [MLOPS, *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def start(self, *args: str) -> Proc:
        proc = Proc(list(args), self.env, self.home / f"{args[0]}-{len(self.procs)}.log")
        self.procs.append(proc)
        return proc

    def controller(self, *, tick: float = TICK_S, lease: float = LEASE_S) -> Proc:
        return self.start("controller", "--tick", f"{tick:g}", "--lease", f"{lease:g}")

    def gateway(self, port: int, *args: str) -> Proc:
        """`mlops serve` on `port`, once every worker answers ready (its routes loaded)."""
        proc = self.start("serve", "--port", str(port), "--log-level", "warning", *args)

        def alive() -> bool:
            assert proc.alive(), proc.output()
            return True

        url = f"http://127.0.0.1:{port}"
        wait_workers(url, workers_in(args), ready=True, alive=alive, timeout=STARTUP_S)
        return proc

    def setup(self, candidate: str, spec: Path) -> None:
        """m:1 serving as revision 1 (set up through the Python client, which is quicker than
        three more commands), then m:2, the `candidate` file, deployed by `mlops deploy -f`."""
        with Client(self.store_url, home=self.home) as client:
            client.register("m", self.models["joblib"], trust=True)
            client.register("m", self.models[candidate], trust=True)
            client.deploy(DEPLOYMENT, model="m:1")
        self.mlops("deploy", DEPLOYMENT, "--model", "m:2", "-f", str(spec))

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_url, migrate=False)
        return self._store

    def deployment(self) -> Deployment:
        with self.store.read() as tx:
            dep = tx.deployment(DEPLOYMENT)
        assert dep is not None
        return dep

    def rows(self, table: Any, *where: Any) -> list[dict[str, Any]]:
        stmt = select(table).where(*where) if where else select(table)
        if "id" in table.c:
            stmt = stmt.order_by(table.c.id)
        with self.store.read() as tx:
            return [dict(row._mapping) for row in tx.conn.execute(stmt)]

    def events(self) -> list[dict[str, Any]]:
        return self.rows(t.events, t.events.c.deployment_id == self.deployment().id)

    def rollout(self) -> dict[str, Any]:
        (rollout,) = self.rows(t.rollouts)
        return rollout

    def lease_holder(self) -> tuple[str, datetime] | None:
        rows = self.rows(t.leases)
        return (rows[0]["holder"], rows[0]["expires_at"]) if rows else None

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
        if self._store is not None:
            self._store.dispose()


@pytest.fixture
def site(store_url: str, home: Path, model_files: dict[str, Path]) -> Iterator[Site]:
    s = Site(store_url, home, model_files)
    yield s
    s.close()


@pytest.fixture
def pg_site(pg_database: str, home: Path, model_files: dict[str, Path]) -> Iterator[Site]:
    s = Site(pg_schema_url(pg_database), home, model_files)
    yield s
    s.close()


# traffic


class Traffic:
    """Clients of the gateway: a thread posting predictions until stopped (at most 10 min, should
    a test leave it behind). Each request goes on a new connection, so every worker of the
    gateway gets some."""

    def __init__(self, port: int, interval_s: float = 0.02) -> None:
        self.url = f"http://127.0.0.1:{port}/v1/models/{DEPLOYMENT}:predict"
        self.interval_s = interval_s
        self.answers: list[tuple[int, int | None]] = []
        """(status, X-Release-Revision) of each answered request, in order."""
        self.refused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        deadline = time.monotonic() + 600
        with httpx.Client(timeout=5, limits=limits) as http:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    answer = http.post(self.url, json={"instances": [ROW]})
                except httpx.TransportError:
                    with self._lock:
                        self.refused += 1
                    self._stop.wait(0.1)
                    continue
                revision = answer.headers.get("x-release-revision")
                with self._lock:
                    self.answers.append((answer.status_code, int(revision) if revision else None))
                self._stop.wait(self.interval_s)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def since(self, mark: int) -> list[tuple[int, int | None]]:
        with self._lock:
            return self.answers[mark:]


def served_revisions(port: int, n: int = 30) -> Counter[int | None]:
    """The X-Release-Revision of `n` fresh requests (each on a new connection)."""
    url = f"http://127.0.0.1:{port}/v1/models/{DEPLOYMENT}:predict"
    out: Counter[int | None] = Counter()
    for _ in range(n):
        answer = httpx.post(url, json={"instances": [ROW]}, timeout=10)
        revision = answer.headers.get("x-release-revision")
        out[int(revision) if revision else None] += 1
    return out


# the gateway against the store


def store_routes(dep: Deployment) -> tuple[int | None, dict[str, Any]]:
    """What the store says the gateway must serve: the stable revision and the split."""
    assert dep.stable_revision is not None
    split = Split.from_dict(dep.routes) if dep.routes else Split.only(dep.stable_revision)
    return dep.stable_revision, split.to_dict()


def gateway_routes(port: int, workers: int) -> dict[str, tuple[int | None, dict[str, Any]]]:
    """Each worker's routes for the deployment, from `/v1/gateway` (a new connection per
    probe reaches any worker; a bounded number of probes)."""
    out: dict[str, tuple[int | None, dict[str, Any]]] = {}
    for _ in range(20 * workers):
        status = httpx.get(f"http://127.0.0.1:{port}/v1/gateway", timeout=5).json()
        route = status["deployments"].get(DEPLOYMENT, {})
        out[status["worker"]] = (route.get("stable_revision"), route.get("split", {}))
        if len(out) == workers:
            break
    return out


def candidate_weight(dep: Deployment) -> float:
    return Split.from_dict(dep.routes).weight_of(2) if dep.routes else 0.0


def wait_gateway_matches_store(site: Site, port: int, workers: int = 1) -> None:
    """Every worker serves exactly the store's routes (read before and after the probe, so a
    change by a running controller in between does not count as a match)."""

    def probe() -> tuple[Any, Any, Any]:
        before = store_routes(site.deployment())
        seen = gateway_routes(port, workers)
        return before, seen, store_routes(site.deployment())

    eventually(
        probe,
        lambda v: v[0] == v[2] and len(v[1]) == workers and all(r == v[0] for r in v[1].values()),
        timeout=SETTLE_S,
    )


# the store's state


def assert_coherent(site: Site) -> None:
    """What must hold at any moment, crash or not: the deployment's routes, its candidate and
    its rollout's state were written together."""
    dep = site.deployment()
    rollouts = site.rows(t.rollouts)
    active = [r for r in rollouts if r["ended_at"] is None]
    assert all(r["phase"] in ("progressing", "paused") for r in active), active
    if dep.candidate_revision is None:
        assert active == []
        assert store_routes(dep)[1] == Split.only(dep.stable_revision or 0).to_dict()
        return
    (rollout,) = active
    assert rollout["candidate_revision"] == dep.candidate_revision
    state = (rollout["state"] or {}).get("rollout")
    assert dep.routes is not None  # from the deploy on, the candidate is routed (at 0 % first)
    split = Split.from_dict(dep.routes)
    assert split.revisions == {dep.stable_revision, dep.candidate_revision}, dep.routes
    weight = 0.0 if state is None else state["weight"]  # None: the controller has not started it
    assert split.weight_of(dep.candidate_revision) == weight, (dep.routes, state)


def assert_settled(site: Site, *, promoted: bool) -> None:
    """The rollout is over and left exactly one trace of each change."""
    dep = site.deployment()
    assert dep.candidate_revision is None
    assert dep.stable_revision == (2 if promoted else 1)
    assert store_routes(dep) == (dep.stable_revision, Split.only(dep.stable_revision).to_dict())
    rollout = site.rollout()  # exactly one rollout was started, and it ended
    assert rollout["phase"] == ("promoted" if promoted else "rolled_back")
    assert rollout["ended_at"] is not None
    releases = site.rows(t.releases, t.releases.c.deployment_id == dep.id)
    assert sorted(r["revision"] for r in releases) == list(range(1, dep.latest_revision + 1))
    assert dep.latest_revision == 2
    status = {r["revision"]: r["status"] for r in releases}
    assert status[2] == ("stable" if promoted else "rolled_back"), status
    actions = [e["action"] for e in site.events()]
    ending = "promote" if promoted else "rollback"
    assert actions[:2] == ["deploy", "rollout"], actions
    assert actions[-1] == ending, actions
    assert actions.count(ending) == 1, actions
    assert {"promote", "rollback", "abort"} & set(actions[:-1]) == set(), actions
    # one outbox row per alert and channel: nothing queued twice, nothing without its event
    outbox = site.rows(t.outbox)
    keys = Counter((row["event_id"], row["channel"]) for row in outbox)
    assert all(n == 1 for n in keys.values()), keys
    event_ids = {e["id"] for e in site.events()}
    assert {row["event_id"] for row in outbox} <= event_ids
    ended = next(e for e in site.events() if e["action"] == ending)
    assert ended["trigger"] == "analysis", ended  # judged on live traffic, not at readiness
    assert ended["id"] in {row["event_id"] for row in outbox}  # its alert was queued
    versions = {r["version"]: r["status"] for r in site.rows(t.model_versions)}
    assert versions[2] == ("ready" if promoted else "quarantined"), versions


def wait_ended(site: Site, timeout: float) -> Deployment:
    return eventually(site.deployment, lambda d: d.candidate_revision is None, timeout)


# 1. the controller killed at random moments


def holder_pid(site: Site) -> int | None:
    """The pid of the controller holding the lease (its holder is `host:pid:nonce`)."""
    lease = site.lease_holder()
    if lease is None or lease[1] < datetime.now(UTC):
        return None
    return int(lease[0].rsplit(":", 2)[1])


def crash_moment(site: Site, controller: Proc, rng: random.Random) -> None:
    """Wait for a random moment in the controller's life: sometimes while it starts (imports,
    the store, waiting out the dead one's lease), mostly while it leads: once it has ticked,
    anywhere in its next second of ticks (in a transaction, between two, while delivering)."""
    if rng.random() < 0.25:
        time.sleep(rng.uniform(0.0, 1.5))
        return
    eventually(lambda: holder_pid(site), lambda pid: pid == controller.pid, timeout=STARTUP_S)
    leading_since = datetime.now(UTC)
    eventually(
        lambda: site.rows(t.rollouts)[-1],
        lambda r: r["ended_at"] is not None or r["updated_at"] > leading_since,
        timeout=SETTLE_S,
    )
    time.sleep(rng.uniform(0.0, 1.0))


@pytest.mark.parametrize(
    ("candidate", "interval_s"), [("joblib2", 0.02), ("fails_live", 0.1)], ids=["good", "failing"]
)
def test_a_rollout_survives_the_controller_killed_at_random_moments(
    site: Site, tmp_path: Path, candidate: str, interval_s: float
) -> None:
    """A good candidate is promoted and a failing one rolled back, whatever the kills cut
    short; after each kill the store is coherent and the gateway serves what it holds."""
    promoted = candidate == "joblib2"
    rng = random.Random(f"{SEED}-{candidate}-{site.store.dialect}")
    port = free_port()
    site.setup(candidate, spec_file(tmp_path, pause_s=3.0))
    site.gateway(port, "--no-controller")
    under_way = []  # the candidate's weight at each kill that found the rollout under way
    # slower traffic for the failing candidate: its errors add up over a few controller lives
    with Traffic(port, interval_s) as traffic:
        controller = site.controller()
        for _ in range(5):
            crash_moment(site, controller, rng)
            controller.kill()
            dep = site.deployment()  # the store is frozen now, whatever the kill cut short
            assert_coherent(site)
            wait_gateway_matches_store(site, port)
            if dep.candidate_revision is None:
                break
            under_way.append(candidate_weight(dep))
            controller = site.controller()
        wait_ended(site, timeout=STARTUP_S)
        controller.stop()
    assert any(weight > 0 for weight in under_way), under_way  # kills while it took traffic
    assert_settled(site, promoted=promoted)
    wait_gateway_matches_store(site, port)
    assert served_revisions(port) == Counter({2 if promoted else 1: 30})
    # The gateway served throughout: the controller's deaths cost no request; only the
    # failing candidate failed any.
    assert traffic.refused == 0
    failed = {rev for status, rev in traffic.answers if status != 200}
    assert failed == (set() if promoted else {2}), failed


# 2. the gateway killed


def test_a_gateway_killed_mid_rollout_comes_back_serving_the_store_routes(
    site: Site, tmp_path: Path
) -> None:
    """`mlops serve --workers 2` with its own controller, killed (every worker) while the
    canary takes traffic: started again, each worker serves the store's routes, and the
    rollout goes on to its end."""
    port = free_port()
    # The rollout holds at 20 % until promoted, so that however slowly this machine runs the
    # checks below, the kill finds the canary taking traffic; it goes on once the gateway is back.
    site.setup("joblib2", spec_file(tmp_path, pause_s=3.0, hold=True))
    gateway = site.gateway(port, "--workers", "2")
    with Traffic(port) as traffic:
        eventually(site.deployment, lambda d: candidate_weight(d) > 0, timeout=STARTUP_S)
        wait_gateway_matches_store(site, port, workers=2)
        mark = traffic.count()
        eventually(lambda: {rev for _, rev in traffic.since(mark)}, lambda r: r == {1, 2}, SETTLE_S)
        gateway.kill()
        held = site.deployment()  # no controller runs now: the store holds still
        assert_coherent(site)
        assert held.candidate_revision == 2
        assert candidate_weight(held) > 0
        refused = traffic.refused
        eventually(lambda: traffic.refused, lambda n: n > refused, SETTLE_S)  # it is down
        assert site.deployment() == held
        gateway = site.gateway(port, "--workers", "2")
        wait_gateway_matches_store(site, port, workers=2)
        site.mlops("promote", DEPLOYMENT)  # the held step; the restarted controller does the rest
        wait_ended(site, timeout=STARTUP_S)
    assert_settled(site, promoted=True)
    wait_gateway_matches_store(site, port, workers=2)
    assert served_revisions(port) == Counter({2: 30})
    assert all(status == 200 for status, _ in traffic.answers)  # the down time was refusals only


# 3. the outbox


def webhook_rows(site: Site) -> list[dict[str, Any]]:
    return site.rows(t.outbox, t.outbox.c.channel.startswith("webhook:"))


def test_alerts_survive_a_receiver_down_and_a_controller_crash_and_arrive_once(
    site: Site, tmp_path: Path
) -> None:
    """The receiver refuses connections while the rollout is paused, resumed and rolled back;
    the controller dies with the three alerts pending; the receiver comes up, a new controller
    starts, and each alert arrives once, in order."""
    receiver = Receiver()  # its port is chosen, nothing listens there yet
    port = free_port()
    kinds = ["paused", "resumed", "rolled_back"]
    spec = spec_file(tmp_path, notify=[{"webhook": receiver.url, "events": kinds}])
    site.setup("fails_live", spec)
    site.gateway(port, "--no-controller")
    controller = site.controller()
    try:
        eventually(site.deployment, lambda d: candidate_weight(d) > 0, timeout=STARTUP_S)
        site.mlops("pause", DEPLOYMENT)
        eventually(site.rollout, lambda r: r["phase"] == "paused", timeout=SETTLE_S)
        site.mlops("resume", DEPLOYMENT)
        eventually(site.rollout, lambda r: r["phase"] == "progressing", timeout=SETTLE_S)
        with Traffic(port):
            wait_ended(site, timeout=SETTLE_S)
        # all three are queued; the oldest has been refused at least once, the others wait
        pending = eventually(
            lambda: webhook_rows(site),
            lambda rows: len(rows) == 3 and rows[0]["attempts"] >= 1,
            timeout=SETTLE_S,
        )
        controller.kill()
        pending = webhook_rows(site)
        assert [r["delivered_at"] for r in pending] == [None, None, None]
        assert receiver.receipts == []
        receiver.start()
        controller = site.controller()
        delivered = eventually(
            lambda: webhook_rows(site),
            lambda rows: all(r["delivered_at"] is not None for r in rows),
            timeout=STARTUP_S,
        )
        controller.stop()
    finally:
        receiver.stop()
    assert [r["id"] for r in delivered] == [r["id"] for r in pending]  # nothing new queued
    assert receiver.delivered() == [r["id"] for r in pending]  # each once, in order
    bodies = [receipt.json() for receipt in receiver.receipts]
    assert [b["kind"] for b in bodies] == kinds
    events = {e["id"]: e["action"] for e in site.events()}
    assert [events[b["event_id"]] for b in bodies] == [
        "rollout_paused",
        "rollout_resumed",
        "rollback",
    ]
    assert_settled(site, promoted=False)


def test_a_controller_killed_during_a_delivery_resends_it_with_the_same_delivery_id(
    site: Site, tmp_path: Path
) -> None:
    """Killed while the receiver holds its answer, the controller never learns that the POST
    arrived. After the claim's lease (30 s) the next controller sends it again: the alert
    arrives twice, byte for byte the same, with the same `X-Mlops-Delivery`, which is what a
    receiver dedupes on (at least once across such a crash, as docs/alerts.md says)."""
    receiver = Receiver(delay=10.0).start()  # holds each answer: the controller dies waiting
    site.extra_env["CRASH_HOOK_SECRET"] = "s3cret"
    hook = {"webhook": receiver.url, "secret_env": "CRASH_HOOK_SECRET", "events": ["aborted"]}
    site.setup("joblib2", spec_file(tmp_path, notify=[hook]))
    controller = site.controller()
    try:
        eventually(site.deployment, lambda d: candidate_weight(d) > 0, timeout=STARTUP_S)
        site.mlops("abort", DEPLOYMENT, "--reason", "crash test")
        eventually(lambda: len(receiver.receipts), lambda n: n >= 1, timeout=SETTLE_S)
        controller.kill()  # mid-POST: the request arrived, the answer did not
        receiver.delay = 0.0  # answer at once from now on
        (claimed,) = webhook_rows(site)
        assert claimed["delivered_at"] is None
        assert claimed["attempts"] == 0  # the try in flight left no trace but its claim
        controller = site.controller()
        (row,) = eventually(
            lambda: webhook_rows(site), lambda rows: rows[0]["delivered_at"] is not None, STARTUP_S
        )
        controller.stop()
    finally:
        receiver.stop()
    first, second = receiver.receipts
    assert first.headers["x-mlops-delivery"] == second.headers["x-mlops-delivery"] == str(row["id"])
    assert first.body == second.body  # byte for byte
    assert first.headers["x-mlops-signature"] == second.headers["x-mlops-signature"]
    assert verify_signature(second.body, "s3cret", second.headers["x-mlops-signature"])
    assert first.json()["id"] == row["id"]
    events = {e["id"]: e["action"] for e in site.events()}
    assert events[first.json()["event_id"]] == "abort"
    assert row["attempts"] == 1
    assert row["delivered_at"] >= claimed["next_attempt_at"]  # not before the claim ran out
    assert site.rollout()["phase"] == "aborted"
    assert len({r.delivery for r in receiver.receipts}) == 1  # a receiver that dedupes: once


# 4. several controllers on PostgreSQL


class LeaseWatch:
    """Samples the lease's holder from a thread (every 20 ms, at most 10 min): each new holder
    with the time it was first seen."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.holders: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        while not self._stop.wait(0.02) and time.monotonic() < deadline:
            pid = holder_pid(self.site)
            if pid is not None and (not self.holders or self.holders[-1][1] != pid):
                self.holders.append((time.monotonic(), pid))

    def since(self, started: float) -> list[int]:
        return [pid for at, pid in self.holders if at >= started]


@pytest.mark.postgres
def test_with_postgresql_one_of_three_controllers_leads_and_another_takes_over_in_time(
    pg_site: Site, tmp_path: Path
) -> None:
    """Three `mlops controller` processes share a PostgreSQL store; one leads. Killed mid-
    rollout, the leader's place is taken, and the rollout ticked, within two lease periods;
    the rollout ends promoted, with each of its changes made by one controller once."""
    lease_s, tick_s = 2.0, 0.2
    site, port = pg_site, free_port()
    site.setup("joblib2", spec_file(tmp_path, pause_s=3.0))
    site.gateway(port, "--no-controller")
    controllers = [site.controller(tick=tick_s, lease=lease_s) for _ in range(3)]
    by_pid = {proc.pid: proc for proc in controllers}
    with Traffic(port), LeaseWatch(site) as watch:
        eventually(site.deployment, lambda d: candidate_weight(d) > 0, timeout=STARTUP_S)
        leader = holder_pid(site)
        assert leader in by_pid
        eventually(lambda: watch.holders[-1][1], lambda pid: pid == leader, timeout=SETTLE_S)
        killed_at = datetime.now(UTC)
        started = time.monotonic()
        by_pid[leader].kill()

        def successor() -> int | None:
            """A new holder that has ticked the rollout since the kill."""
            pid = holder_pid(site)
            ticked = site.rollout()["updated_at"] > killed_at
            return pid if pid not in (None, leader) and ticked else None

        successor_pid = eventually(successor, bool, timeout=4 * lease_s)
        takeover_s = time.monotonic() - started
        assert takeover_s <= 2 * lease_s, f"took over in {takeover_s:.2f} s"
        assert successor_pid in by_pid
        assert by_pid[successor_pid].alive()
        wait_ended(site, timeout=SETTLE_S)
        logs = eventually(  # a controller logs each change it makes just after its commit
            lambda: "".join(proc.output() for proc in controllers),
            lambda text: "revision 2 promoted" in text,
            timeout=SETTLE_S,
        )
    # Before the kill the lease may have moved (a first tick, which loads the candidate, can
    # outlast it on a busy machine); from the kill on it moved once, to the successor.
    assert {pid for _, pid in watch.holders} <= set(by_pid)
    assert watch.since(started) == [successor_pid]
    assert_settled(site, promoted=True)
    assert len(site.rows(t.leases)) == 1
    # Each change was made once, by one controller: its line is in one log, once.
    for change in ("candidate 2 at 20%", "candidate 2 at 50%", "revision 2 promoted"):
        assert logs.count(change) == 1, logs
    wait_gateway_matches_store(site, port)


def test_a_controller_whose_lease_ran_out_mid_tick_does_not_act_on_a_stale_state(
    client: Client, model_files: dict[str, Path]
) -> None:
    """A tick can outlast the lease (the first one loads and tries the candidate, which may
    take seconds): another controller then leads and ticks the same rollout meanwhile. The
    slow one must not write its transition, computed from the state it read before, on top:
    here that would queue the `paused` alert twice. In process, to place the other
    controller's tick exactly between the slow one's read and its write."""
    client.register("m", model_files["joblib"], trust=True)
    client.register("m", model_files["joblib2"], trust=True)
    client.deploy(DEPLOYMENT, model="m:1")
    spec = {"steps": [{"set_weight": 20}, {"pause": {}}], "notify": [{"log": True}]}
    client._service.deploy(
        DEPLOYMENT, model=ComponentRef("m", 2), rollout=load_spec(spec, strategy="canary")
    )
    other = Controller(client._service, analysis_judge)
    meanwhile: list[str] = []

    def slow_judge(section: dict[str, Any]) -> Judge:
        if not meanwhile:  # the other controller's whole tick, while this one is in its own
            meanwhile.extend(other.tick())
        return analysis_judge(section)

    slow = Controller(client._service, slow_judge)
    lines = slow.tick()
    assert meanwhile == [f"{DEPLOYMENT}: candidate 2 at 20% (mirror 0%)"]
    actions = [e.action for e in client.events(DEPLOYMENT, limit=10)]
    assert actions.count("rollout_paused") == 1, actions
    with client._service.store.read() as tx:
        kinds = [row.payload["kind"] for row in tx.conn.execute(select(t.outbox))]
    assert kinds == ["paused"]
    assert lines == []  # it stood down: the rollout moved on since it read it
    assert slow.tick() == []  # and it goes on from the state the other one wrote
    assert [e.action for e in client.events(DEPLOYMENT, limit=10)] == actions
