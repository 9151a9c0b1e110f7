"""Each strategy end to end: `mlops serve` with its controller, live traffic, real models."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlops import Client
from tests.models import training_data
from tests.server import (
    MLOPS,
    SETTLE_S,
    STARTUP_S,
    Server,
    Traffic,
    running_server,
    server_env,
    wait_for,
)


def live_traffic(url: str) -> Traffic:
    """Single-row requests to `api`, on two connections."""
    rows = training_data()[0].tolist()
    return Traffic(url, "/v1/models/api:predict", [{"instances": [r]} for r in rows], 2)


@pytest.fixture
def live(
    store_url: str, home: Path, model_files: dict[str, Path]
) -> Iterator[tuple[Client, Server, Traffic]]:
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.register("m", model_files["joblib2"], trust=True)
        client.register("m", model_files["fails_live"], trust=True)
        client.deploy("api", model="m:1")
        with running_server(store_url, home) as server, live_traffic(server.url) as traffic:
            wait_for(lambda: len(traffic.seen) > 50, timeout=STARTUP_S)
            yield client, server, traffic


def _ended(client: Client, timeout: float = 60) -> Any:
    wait_for(lambda: client.status("api")[0].rollout is None, timeout=timeout, interval=0.1)
    return client.status("api")[0]


def _rollout_events(client: Client) -> list[str]:
    return [e.action for e in reversed(client.events("api", limit=20))]


def test_bluegreen_preview_rejects_a_failing_candidate_before_any_user_sees_it(
    live: tuple[Client, Server, Traffic],
) -> None:
    client, _, traffic = live
    mark = len(traffic.seen)
    spec = {"bluegreen": {"preview": {"duration": "30s", "requests": 500}, "watch": "2s"}}
    client.deploy("api", model="m:3", strategy="bluegreen", rollout=spec)
    status = _ended(client)
    assert status.revision == 1
    served = traffic.since(mark)
    assert {rev for (_, rev) in served} == {1}  # users were served by the stable release only
    assert all(code == 200 for (code, _) in served)
    rollback = next(e for e in client.events("api") if e.action == "rollback")
    assert rollback.trigger == "analysis"
    assert rollback.reason is not None
    assert rollback.reason.startswith("errors: candidate worse")
    assert client.versions("m")[0].quarantined


def test_bluegreen_switches_at_once_keeps_a_holdback_then_finishes(
    live: tuple[Client, Server, Traffic],
) -> None:
    client, _, traffic = live
    spec = {"bluegreen": {"holdback": 20, "watch": "3s", "requests": 20}}
    client.deploy("api", model="m:2", strategy="bluegreen", rollout=spec)
    # In the watch window, or already past it: a slow look can miss the whole window.
    wait_for(lambda: (client.status("api")[0].rollout or {"weight": 80})["weight"] == 80, 30)
    mark = len(traffic.seen)
    wait_for(lambda: len(traffic.seen) > mark + 200, timeout=SETTLE_S)
    during = traffic.since(mark)
    status = client.status("api")[0]
    if status.rollout is not None:  # still in the watch window: both releases serve
        assert during[(200, 2)] > during[(200, 1)] > 0
    status = _ended(client)
    assert (status.revision, status.components["model"].version) == (2, 2)
    assert "promote" in _rollout_events(client)
    mark = len(traffic.seen)
    wait_for(lambda: len(traffic.seen) > mark + 50, timeout=SETTLE_S)
    assert set(traffic.since(mark + 10)) == {(200, 2)}


def test_linear_moves_a_fixed_share_every_interval(live: tuple[Client, Server, Traffic]) -> None:
    client, _, _ = live
    client.deploy(
        "api", model="m:2", strategy="linear", rollout={"linear": {"step": 25, "interval": "1s"}}
    )
    weights: list[float] = []

    def watch() -> bool:
        rollout = client.status("api")[0].rollout
        if rollout is None:
            return True
        if not weights or weights[-1] != rollout["weight"]:
            weights.append(rollout["weight"])
        return False

    wait_for(watch, timeout=60, interval=0.05)
    assert weights == sorted(weights)
    # The plan ends with a step to 100 %: a look between it and the promotion can see it.
    assert set(weights) <= {0, 25, 50, 75, 100}
    assert {25, 50, 75} & set(weights)
    status = client.status("api")[0]
    assert status.revision == 2
    assert client.history("api", limit=1)[0].strategy == "linear"


def test_shadow_mirrors_with_no_user_impact_then_switches(
    live: tuple[Client, Server, Traffic],
) -> None:
    client, _, traffic = live
    spec = {"shadow": {"duration": "2s", "requests": 50, "then": "switch"}}
    client.deploy("api", model="m:2", strategy="shadow", rollout=spec)
    # Mirroring, or already past it: a slow look can miss the whole shadow phase.
    wait_for(lambda: (client.status("api")[0].rollout or {"mirror": 100})["mirror"] == 100, 30)
    mark = len(traffic.seen)
    window_s = 3600  # the whole test: what the shadow measured stays in view however slow it is
    # Copies are compared from the request log and counted from the flushed tallies; a read
    # between the two can see the first without the second: wait for both.
    shadowed = wait_for(
        lambda: [
            m
            for m in client.measurements("api", window_s=window_s)
            if m.role == "shadow" and m.requests > 0
        ],
        timeout=SETTLE_S,
    )
    assert shadowed[0].revision == 2
    assert shadowed[0].requests > 0
    compared = wait_for(
        lambda: [m for m in client.measurements("api", window_s=window_s) if m.compared],
        timeout=SETTLE_S,
    )
    assert compared[0].agreement is not None
    assert compared[0].agreement > 0.5  # two logistic regressions, mostly alike
    served = traffic.since(mark)  # before the look at the rollout, which may end in between
    if client.status("api")[0].rollout is not None:
        assert {rev for (_, rev) in served} == {1}  # answers came from stable
    status = _ended(client)
    assert status.revision == 2


def test_shadow_rejects_a_candidate_whose_answers_disagree(
    live: tuple[Client, Server, Traffic], model_files: dict[str, Path]
) -> None:
    client, _, traffic = live
    client.register("m", model_files["constant"], trust=True)  # m:4 answers 1 to everything
    mark = len(traffic.seen)
    spec = {
        "shadow": {"duration": "1m", "then": "switch"},
        "analysis": {"min_agreement": 0.9},
    }
    client.deploy("api", model="m:4", strategy="shadow", rollout=spec)
    status = _ended(client)
    assert status.revision == 1
    rollback = next(e for e in client.events("api") if e.action == "rollback")
    assert rollback.reason is not None
    assert rollback.reason.startswith("disagreement: candidate above 10.00%")
    served = traffic.since(mark)
    assert {rev for (_, rev) in served} == {1}
    assert all(code == 200 for (code, _) in served)


def _mlops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_status_watch_follows_a_rollout_and_exits_10_when_it_does_not_complete(
    live: tuple[Client, Server, Traffic], store_url: str, home: Path, tmp_path: Path
) -> None:
    client, _, _ = live
    env = server_env(store_url, home)
    spec_file = tmp_path / "canary.yaml"
    steps = [{"set_weight": 50}, {"pause": {"duration": "1m"}}]
    spec_file.write_text(yaml.safe_dump({"strategy": "canary", "steps": steps}))
    deployed = _mlops(env, "deploy", "api", "--model", "m:2", "-f", str(spec_file))
    assert deployed.returncode == 0, deployed.stderr
    with subprocess.Popen(
        [MLOPS, "status", "api", "--watch", "-o", "json"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as watch:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())  # one JSON object a line, as it changes
        assert first["rollout"]["candidate_revision"] == 2
        wait_for(lambda: (client.status("api")[0].rollout or {}).get("weight") == 50, timeout=30)
        aborted = _mlops(env, "abort", "api", "--reason", "seen enough")
        assert aborted.returncode == 0, aborted.stderr
        views = [first] + [json.loads(line) for line in watch.stdout]
        assert watch.wait(60) == 10
    assert any(v["rollout"] and v["rollout"]["weight"] == 50 for v in views)
    assert views[-1]["rollout"] is None
    assert views[-1]["revision"] == 1

    # A rollout that ends before the watch begins still gives its outcome.
    deployed = _mlops(env, "deploy", "api", "--model", "m:3", "-f", str(spec_file))
    assert deployed.returncode == 0, deployed.stderr
    _ended(client)
    assert _mlops(env, "status", "api", "--watch", "-o", "json").returncode == 10

    # Piped, the view is a line per change, then the per-revision table; 0 when promoted.
    deployed = _mlops(env, "deploy", "api", "--model", "m:2", "-f", str(spec_file))
    assert deployed.returncode == 0, deployed.stderr
    with subprocess.Popen(
        [MLOPS, "status", "api", "--watch"], env=env, stdout=subprocess.PIPE, text=True
    ) as watch:
        assert watch.stdout is not None
        line = watch.stdout.readline()
        assert line.startswith("api: canary of revision 4, step ")
        wait_for(lambda: (client.status("api")[0].rollout or {}).get("weight") == 50, timeout=30)
        promoted = _mlops(env, "promote", "api", "--full")
        assert promoted.returncode == 0, promoted.stderr
        shown = line + watch.stdout.read()
        assert watch.wait(60) == 0
    assert "candidate 50%" in shown
    assert "REVISION" in shown
    assert client.status("api")[0].components["model"].version == 2


def test_the_replaced_release_stays_loaded_for_the_specs_keep_warm(
    store_url: str, home: Path, model_files: dict[str, Path]
) -> None:
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.register("m", model_files["joblib2"], trust=True)
        client.deploy("api", model="m:1")
        # The gateway alone would unload a replaced version at once (--keep-warm 0).
        with (
            running_server(store_url, home, "--keep-warm", "0") as server,
            live_traffic(server.url),
        ):
            spec = {"bluegreen": {"holdback": 0, "watch": "1s"}, "keep_warm": "1h"}
            client.deploy("api", model="m:2", strategy="bluegreen", rollout=spec)
            assert _ended(client).revision == 2

            def loaded() -> list[str]:
                return list(httpx.get(f"{server.url}/v1/gateway").json()["loaded_versions"])

            def served() -> str:
                row = training_data()[0][0].tolist()
                answer = httpx.post(
                    f"{server.url}/v1/models/api:predict", json={"instances": [row]}
                )
                return answer.headers["x-release-revision"]

            wait_for(lambda: served() == "2", timeout=SETTLE_S)
            assert loaded() == ["m:1", "m:2"]
            client.rollback("api", reason="back")  # no rollout: nothing asks to keep m:2 warm
            assert wait_for(lambda: loaded() == ["m:1"], timeout=SETTLE_S)
