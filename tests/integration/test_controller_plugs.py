"""The controller's plug points take fakes: a metric provider that answers from a table decides
a rollout as Prometheus would, and a notifier factory receives the alerts that follow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops import Client, ComponentRef
from mlops.controller.judge import analysis_judge
from mlops.controller.loop import Controller
from mlops.core.metric_checks import QueryError
from mlops.notify import channel_of
from mlops.rollout_spec import NotifySpec, load_spec
from tests.fakes import FixedReadings, RecordingChannels
from tests.integration.test_controller import measure

HOOK = "http://127.0.0.1:9/hook"
"""Never contacted: the recording notifiers stand in for the webhook."""


def spec(max_share: float) -> dict[str, Any]:
    share = {
        "name": "share",
        "prometheus": {
            "address": "http://prom:9090",
            "query": 'x{deployment="{deployment}",revision="{candidate_revision}"}',
        },
        "max": max_share,
        "interval": "10s",
    }
    return {
        "steps": [{"set_weight": 50}, {"pause": {"duration": "30s"}}],
        "progress_deadline": "5m",
        "analysis": {"latency_tolerance": None, "metrics": [share]},
        "notify": [{"webhook": HOOK, "events": ["rolled_back", "promoted"]}],
    }


def webhook_channel() -> str:
    channel = channel_of(NotifySpec(webhook=HOOK, events=["rolled_back", "promoted"]))
    assert channel is not None
    return channel


def rolling(
    client: Client, model_files: dict[str, Path], readings: FixedReadings, max_share: float
) -> tuple[Controller, RecordingChannels, list[float]]:
    client.register("m", model_files["skops"])
    client.register("m", model_files["onnx"])
    client.deploy("api", model="m:1")
    rollout = load_spec(spec(max_share), strategy="canary")
    client._service.deploy("api", model=ComponentRef("m", 2), rollout=rollout)
    channels = RecordingChannels()
    now = [1_800_000_000.0]
    controller = Controller(
        client._service,
        analysis_judge,
        clock=lambda: now[0],
        metrics=lambda: readings,
        notifiers=channels,
    )
    return controller, channels, now


def test_a_failing_reading_from_the_provider_rolls_the_candidate_back_and_alerts(
    client: Client, model_files: dict[str, Path]
) -> None:
    readings = FixedReadings({"share": 0.95})
    controller, channels, _ = rolling(client, model_files, readings, max_share=0.9)
    lines = controller.tick()
    assert any("rolled back" in line for line in lines), lines
    assert readings.asked == [
        ("share", {"deployment": "api", "stable_revision": "1", "candidate_revision": "2"})
    ]
    assert client.status("api")[0].revision == 1
    assert client.versions("m")[0].quarantined
    controller.deliver_now()
    sent = channels.sent(webhook_channel())
    assert [n.alert.kind for n in sent] == ["rolled_back"]
    assert "share = 0.95" in str(sent[0].to_dict())
    controller.close()
    assert readings.closed


def test_a_passing_reading_lets_the_candidate_through_and_is_asked_once_per_interval(
    client: Client, model_files: dict[str, Path]
) -> None:
    readings = FixedReadings({"share": 0.5})
    controller, channels, now = rolling(client, model_files, readings, max_share=0.9)
    controller.tick()
    now[0] += 5
    controller.tick()
    assert len(readings.asked) == 1  # the interval is 10 s
    measure(client, 1, 200)
    measure(client, 2, 200)
    now[0] += 30
    lines = controller.tick()
    assert any("promoted" in line for line in lines), lines
    assert len(readings.asked) == 2
    assert client.status("api")[0].revision == 2
    controller.deliver_now()
    assert [n.alert.kind for n in channels.sent(webhook_channel())] == ["promoted"]
    controller.close()


def test_a_provider_error_holds_the_rollout_and_is_shown(
    client: Client, model_files: dict[str, Path]
) -> None:
    readings = FixedReadings({"share": QueryError("http://prom:9090: connection refused")})
    controller, _, _ = rolling(client, model_files, readings, max_share=0.9)
    controller.tick()
    view = client.status("api")[0].rollout
    assert view is not None
    assert client.status("api")[0].revision == 1
    assert any("connection refused" in reason for reason in view["reasons"]), view["reasons"]
    controller.close()
