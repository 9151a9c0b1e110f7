"""Starting a rollout, sending it commands, and rolling back during it (the store side)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops import Client, ComponentRef, Conflict, InvalidInput
from mlops.rollout_spec import load_spec


@pytest.fixture
def two_versions(client: Client, model_files: dict[str, Path]) -> Client:
    client.register("m", model_files["skops"])
    client.register("m", model_files["onnx"])
    client.deploy("api", model="m:1")
    return client


def test_a_canary_deploy_writes_a_candidate_with_no_traffic_yet(two_versions: Client) -> None:
    service = two_versions._service
    result = service.deploy("api", model=ComponentRef("m", 2), rollout=load_spec(strategy="canary"))
    assert (result.action, result.revision) == ("rollout", 2)
    status = two_versions.status("api")[0]
    assert status.revision == 1  # stable is unchanged until the controller promotes
    record = two_versions.history("api", limit=1)[0]
    assert (record.revision, record.status, record.strategy) == (2, "candidate", "canary")
    with service.store.read() as tx:
        dep = tx.deployment("api")
        assert dep is not None
        assert dep.candidate_revision == 2
        assert dep.routes == {"weights": {"1": 100.0, "2": 0.0}, "shadows": {}}
        rollout = tx.active_rollout(dep)
    assert rollout is not None
    assert (rollout.strategy, rollout.phase) == ("canary", "progressing")
    with pytest.raises(Conflict, match="rollout in progress"):
        service.deploy("api", model=ComponentRef("m", 1))


def test_the_first_release_is_deployed_directly(
    client: Client, model_files: dict[str, Path]
) -> None:
    client.register("m", model_files["skops"])
    result = client._service.deploy(
        "new", model=ComponentRef("m", 1), rollout=load_spec(strategy="canary")
    )
    assert (result.action, client.status("new")[0].revision) == ("deploy", 1)


def test_commands_are_queued_for_the_controller(two_versions: Client) -> None:
    service = two_versions._service
    with pytest.raises(Conflict, match="no rollout in progress"):
        service.request("api", "promote")
    service.deploy("api", model=ComponentRef("m", 2), rollout=load_spec(strategy="canary"))
    command_id = service.request("api", "abort", reason="wrong data")
    with pytest.raises(InvalidInput, match="unknown rollout command"):
        service.request("api", "explode")
    with service.store.read() as tx:
        pending = tx.pending_commands(tx.deployment("api").id)  # type: ignore[union-attr]
    assert [(c.id, c.kind, c.reason) for c in pending] == [(command_id, "abort", "wrong data")]


def test_a_rollback_during_a_rollout_ends_it_and_quarantines_the_candidate(
    two_versions: Client,
) -> None:
    service = two_versions._service
    service.deploy("api", model=ComponentRef("m", 2), rollout=load_spec(strategy="canary"))
    result = two_versions.rollback("api", reason="errors")
    assert (result.action, result.revision, result.from_revision) == ("rollback", 1, 2)
    assert two_versions.versions("m")[0].quarantined
    history = two_versions.history("api")
    assert [(r.revision, r.status) for r in history] == [(2, "rolled_back"), (1, "stable")]
    with service.store.read() as tx:
        dep = tx.deployment("api")
        assert dep is not None
        assert (dep.candidate_revision, dep.routes) == (None, None)
    events = two_versions.events("api", limit=1)
    assert (events[0].action, events[0].from_revision, events[0].to_revision) == ("rollback", 2, 1)
    assert events[0].details["quarantined"] == ["m:2"]
