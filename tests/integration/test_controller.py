"""The controller against a real store: measurements arrive as the gateway writes them, the
core decides, and routes, releases, quarantines and events follow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from mlops import Client, ComponentRef
from mlops.controller.loop import Controller
from mlops.core.measure import Measurements
from mlops.rollout_spec import load_spec
from mlops.store import schema as t
from tests.server import eventually

STEPS = {"steps": [{"set_weight": 20}, {"pause": {"requests": 10}}, {"set_weight": 100}]}


@dataclass(frozen=True)
class Judged:
    outcome: str
    reasons: tuple[str, ...] = ()


def error_rate_judge(_analysis: dict[str, Any]) -> Any:
    """Fails a candidate whose error rate passes 50 % over at least 20 requests (a stand-in
    for the sequential analysis, which has its own tests)."""

    def judge(
        state: dict[str, Any], stable: Measurements, candidate: Measurements, _e: float
    ) -> Any:
        n = state.get("n", 0) + candidate.requests
        bad = state.get("bad", 0) + candidate.error_count
        outcome = "fail" if n >= 20 and bad / n > 0.5 else "inconclusive"
        return {"n": n, "bad": bad}, Judged(outcome, (f"candidate error rate {bad}/{n}",))

    return judge


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rolling(client: Client, model_files: dict[str, Path]) -> tuple[Client, Controller, Clock]:
    client.register("m", model_files["skops"], sample=model_files["sample_json"])
    client.register("m", model_files["onnx"], sample=model_files["sample_json"])
    client.deploy("api", model="m:1")
    clock = Clock()
    return client, Controller(client._service, error_rate_judge, clock=clock), clock


def start(client: Client, version: int = 2, spec: dict[str, Any] | None = None) -> None:
    client._service.deploy(
        "api", model=ComponentRef("m", version), rollout=load_spec(spec or STEPS, strategy="canary")
    )


def measure(client: Client, revision: int, requests: int, errors: int = 0) -> None:
    """What a gateway worker's flush writes."""
    store = client._service.store
    with store.write() as tx:
        dep = tx.deployment("api")
        assert dep is not None
        now = datetime.now(UTC)
        tx.conn.execute(
            insert(t.measurements).values(
                deployment_id=dep.id,
                revision=revision,
                role="live",
                worker="test",
                started_at=now,
                ended_at=now,
                requests=requests,
                errors={"exception": errors} if errors else {},
                latency={"40": requests},
                predictions={"1": requests - errors},
            )
        )


def routes(client: Client) -> Any:
    with client._service.store.read() as tx:
        dep = tx.deployment("api")
        assert dep is not None
        return dep.routes, dep.candidate_revision


def test_a_healthy_canary_steps_up_and_is_promoted(
    rolling: tuple[Client, Controller, Clock],
) -> None:
    client, controller, clock = rolling
    start(client)
    lines = controller.tick()
    assert "candidate 2 at 20%" in lines[0]
    assert routes(client) == ({"weights": {"1": 80.0, "2": 20.0}, "shadows": {}}, 2)
    measure(client, 1, 40)
    measure(client, 2, 4)
    clock.now += 1
    assert controller.tick() == []  # 4 of 10 requests: the pause holds
    measure(client, 2, 8)
    clock.now += 1
    lines = controller.tick()
    assert "revision 2 promoted" in lines[0]
    status = client.status("api")[0]
    assert (status.revision, status.components["model"].version) == (2, 2)
    # All traffic to the new stable; the replaced release stays loaded for keep_warm (10 min).
    warm = {"weights": {"2": 100.0}, "shadows": {}, "warm": {"1": clock.now + 600}}
    assert routes(client) == (warm, None)
    assert [e.action for e in client.events("api", limit=3)][0:1] == ["promote"]


def test_a_failing_canary_is_rolled_back_and_quarantined(
    rolling: tuple[Client, Controller, Clock],
) -> None:
    client, controller, clock = rolling
    start(client)
    controller.tick()
    measure(client, 2, 30, errors=25)
    clock.now += 1
    lines = controller.tick()
    assert "rolled back (analysis" in lines[0]
    assert client.status("api")[0].revision == 1
    assert routes(client) == (None, None)
    assert client.versions("m")[0].quarantined
    rollback = next(e for e in client.events("api", limit=10) if e.action == "rollback")
    assert rollback.trigger == "analysis"
    assert "candidate error rate 25/30" in rollback.details["evidence"][0]
    assert client.history("api", limit=1)[0].status == "rolled_back"


def test_a_candidate_that_fails_readiness_never_gets_traffic(
    client: Client, model_files: dict[str, Path]
) -> None:
    client.register("m", model_files["skops"])
    client.register("m", model_files["nan"], trust=True, sample=model_files["sample_json"])
    client.deploy("api", model="m:1")
    controller = Controller(client._service, error_rate_judge, clock=Clock())
    start(client)
    lines = controller.tick()
    assert "rolled back (health" in lines[0]
    assert "NaN" in lines[0]
    assert routes(client) == (None, None)


def test_abort_and_promote_full_commands(rolling: tuple[Client, Controller, Clock]) -> None:
    client, controller, clock = rolling
    start(client)
    controller.tick()
    client._service.request("api", "abort", reason="wrong features")
    clock.now += 1
    assert "aborted" in controller.tick()[0]
    assert not client.versions("m")[0].quarantined  # an abort quarantines nothing
    start(client)
    controller.tick()
    client._service.request("api", "promote_full")
    clock.now += 1
    assert "promoted" in controller.tick()[-1]
    assert client.status("api")[0].components["model"].version == 2


def test_no_traffic_past_the_deadline_fails(rolling: tuple[Client, Controller, Clock]) -> None:
    client, controller, clock = rolling
    start(client, spec={**STEPS, "progress_deadline": "2m"})
    controller.tick()
    clock.now += 121
    lines = controller.tick()
    assert "rolled back (deadline" in lines[0]


def test_one_controller_leads_and_another_takes_over_when_it_dies(
    rolling: tuple[Client, Controller, Clock],
) -> None:
    from mlops.controller.leader import LeaderLoop

    client, controller, clock = rolling
    first = LeaderLoop(controller, lease_s=3, holder="first")
    second = LeaderLoop(
        Controller(client._service, error_rate_judge, clock=clock), lease_s=5, holder="second"
    )
    assert first.run_once()
    assert not second.run_once()
    assert first.run_once()  # renewed, under the same fence
    assert first.fence is not None
    assert first.fence.epoch == 1
    # The first died after its last renewal: once its lease ran out by the database's clock
    # (the controllers' own clocks play no part), the second takes over.
    eventually(second.run_once, bool)
    assert second.fence is not None
    assert second.fence.epoch == 2
    assert not first.run_once()


def test_a_leader_cut_off_takes_no_action_once_another_took_over(
    rolling: tuple[Client, Controller, Clock],
) -> None:
    from mlops.controller.leader import LeaderLoop
    from mlops.store.leases import fenced

    client, controller, clock = rolling
    start(client)
    first = LeaderLoop(controller, lease_s=0.3, holder="first")
    assert first.run_once()
    stale = first.fence
    measure(client, 2, 30, errors=25)  # the candidate is bad: whoever leads rolls it back
    clock.now += 1
    second = LeaderLoop(
        Controller(client._service, error_rate_judge, clock=clock), lease_s=5, holder="second"
    )
    # The first is cut off (paused, partitioned) past its lease; the second takes over but
    # has not ticked yet when the first, unaware, ticks under the fence it still has.
    eventually(lambda: acquire_lease(client._service.store, "second"), bool)
    with fenced(stale):
        assert controller.tick() == []  # every write refused: nothing done
    assert client.status("api")[0].phase == "progressing"
    assert [e.action for e in client.events("api", limit=20)].count("rollback") == 0
    assert second.run_once()
    assert client.history("api", limit=1)[0].status == "rolled_back"
    assert [e.action for e in client.events("api", limit=20)].count("rollback") == 1
    with fenced(stale):
        controller.tick()
    assert [e.action for e in client.events("api", limit=20)].count("rollback") == 1


def acquire_lease(store: Any, holder: str) -> bool:
    from mlops.controller.leader import LEASE
    from mlops.store.leases import acquire_lease as take

    return take(store, name=LEASE, holder=holder, ttl_s=5) is not None


def test_a_leader_that_stops_cleanly_gives_its_lease_up(
    rolling: tuple[Client, Controller, Clock],
) -> None:
    from mlops.controller.leader import LeaderLoop

    client, controller, clock = rolling
    first = LeaderLoop(controller, lease_s=5, holder="first")
    second = LeaderLoop(
        Controller(client._service, error_rate_judge, clock=clock), lease_s=5, holder="second"
    )
    assert first.run_once()
    assert not second.run_once()
    first.stop()
    assert second.run_once()  # at once, not after the 5 s lease


def test_a_rollback_alert_reaches_a_webhook_once(rolling: tuple[Client, Controller, Clock]) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append({"delivery": self.headers["x-mlops-delivery"], **json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client, controller, clock = rolling
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
        start(client, spec={**STEPS, "notify": [{"webhook": hook, "events": ["rolled_back"]}]})
        controller.tick()
        measure(client, 2, 30, errors=25)
        clock.now += 1
        controller.tick()
        controller.deliver()
        controller.deliver()
        controller.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    assert received[0]["kind"] == "rolled_back"
    assert received[0]["deployment"] == "api"
    assert "candidate error rate 25/30" in json.dumps(received[0])
