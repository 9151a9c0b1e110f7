"""Deploys, rollbacks, history and quarantine through the Python API, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops import (
    BadReference,
    Client,
    ComponentRef,
    InvalidInput,
    NoRollbackTarget,
    NotFound,
    Quarantined,
    StoreUnavailable,
)
from tests.snapshot import store_content


@pytest.fixture
def registered(client: Client, model_files: dict[str, Path]) -> Client:
    """Model `m` versions 1-4 and `prep` versions 1-2."""
    for key in ("joblib", "joblib2", "skops", "onnx"):
        client.register("m", model_files[key], trust=True)
    client.register("prep", model_files["onnx"])
    client.register("prep", model_files["skops"])
    return client


def model_version(client: Client, deployment: str = "api") -> int:
    return client.status(deployment)[0].components["model"].version


def test_each_deploy_writes_the_next_revision(registered: Client) -> None:
    first = registered.deploy("api", model="m:1", reason="first")
    assert (first.revision, first.from_revision, first.changed) == (1, None, True)
    second = registered.deploy("api", model="m:2")
    assert (second.revision, second.from_revision) == (2, 1)
    status = registered.status("api")[0]
    assert status.revision == 2
    assert status.to_dict()["components"] == {"model": {"model": "m", "version": 2}}


def test_deploying_what_serves_writes_nothing(registered: Client) -> None:
    registered.deploy("api", model="m:1")
    again = registered.deploy("api", model="m:1")
    assert not again.changed
    assert again.revision == 1
    assert len(registered.history("api")) == 1


def test_plain_rollback_goes_to_the_previous_stable_and_back(registered: Client) -> None:
    registered.deploy("api", model="m:1")
    registered.deploy("api", model="m:2")
    back = registered.rollback("api", reason="bad")
    assert (back.revision, back.source_revision, back.from_revision) == (3, 1, 2)
    assert model_version(registered) == 1
    forward = registered.rollback("api")
    assert (forward.revision, forward.source_revision) == (4, 2)
    assert model_version(registered) == 2


def test_rollback_to_a_version_and_to_a_revision(registered: Client) -> None:
    for v in (1, 2, 3, 4):
        registered.deploy("api", model=f"m:{v}")
    by_version = registered.rollback(version=2)  # the only deployment may be left out
    assert (by_version.revision, by_version.source_revision) == (5, 2)
    assert model_version(registered) == 2
    by_revision = registered.rollback("api", revision=3)
    assert (by_revision.revision, by_revision.source_revision) == (6, 3)
    assert model_version(registered) == 3
    again = registered.rollback("api", revision=3)
    assert not again.changed
    assert again.revision == 6


def test_version_rollback_prefers_the_latest_release_that_served_it(registered: Client) -> None:
    registered.deploy("api", model="m:1", components={"preprocessor": "prep:1"})
    registered.deploy("api", components={"preprocessor": "prep:2"})
    registered.deploy("api", model="m:3")
    result = registered.rollback("api", version=1)
    assert result.source_revision == 2
    assert result.components == {
        "model": ComponentRef("m", 1),
        "preprocessor": ComponentRef("prep", 2),
    }


def test_version_never_served_makes_a_release_from_the_registry(registered: Client) -> None:
    registered.deploy("api", model="m:1", components={"preprocessor": "prep:1"})
    result = registered.rollback("api", version=4)
    assert result.source_revision is None
    assert result.components == {
        "model": ComponentRef("m", 4),
        "preprocessor": ComponentRef("prep", 1),
    }


def test_partial_rollback_reverts_one_component(registered: Client) -> None:
    registered.deploy("api", model="m:1", components={"preprocessor": "prep:1"})
    registered.deploy("api", model="m:2", components={"preprocessor": "prep:2"})
    result = registered.rollback("api", component="preprocessor", reason="prep broke")
    assert result.components == {
        "model": ComponentRef("m", 2),
        "preprocessor": ComponentRef("prep", 1),
    }
    assert result.changes == [{"component": "preprocessor", "from": "prep:2", "to": "prep:1"}]
    event = registered.history("api", limit=1)[0].event
    assert event is not None
    assert event.details["component"] == "preprocessor"


def test_history_is_newest_first_with_events(registered: Client) -> None:
    registered.deploy("api", model="m:1", reason="launch")
    registered.deploy("api", model="m:2")
    registered.rollback("api", reason="errors up")
    records = registered.history("api")
    assert [r.revision for r in records] == [3, 2, 1]
    assert [r.status for r in records] == ["stable", "rolled_back", "superseded"]
    top = records[0].to_dict()
    assert top["components"] == {"model": {"model": "m", "version": 1}}
    event = top["event"]
    assert (event["action"], event["trigger"], event["reason"], event["from"], event["to"]) == (
        "rollback",
        "manual",
        "errors up",
        2,
        3,
    )
    assert event["actor"]
    assert event["at"]
    assert event["details"]["restores"] == 1
    assert [r.revision for r in registered.history("api", limit=1, before=3)] == [2]


def test_quarantined_versions_need_force(registered: Client) -> None:
    registered.deploy("api", model="m:1")
    registered.deploy("api", model="m:2")
    registered.quarantine("m:1", reason="leaks labels")
    with pytest.raises(Quarantined, match="leaks labels"):
        registered.rollback("api")
    with pytest.raises(Quarantined):
        registered.deploy("other", model="m:1")
    assert registered.rollback("api", force=True).components["model"] == ComponentRef("m", 1)
    assert registered.status("api")[0].quarantined == ["m:1"]
    registered.unquarantine("m:1")
    assert registered.deploy("other", model="m:1").changed


def test_quarantine_needs_a_reason(registered: Client) -> None:
    with pytest.raises(InvalidInput, match="reason"):
        registered.quarantine("m:1", reason=" ")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c.rollback("nope"), NotFound, "deployment 'nope' does not exist"),
        (lambda c: c.deploy("api", model="zzz:1"), NotFound, "model 'zzz' is not registered"),
        (lambda c: c.deploy("api", model="m:99"), NotFound, "m:99 is not registered"),
        (lambda c: c.rollback("api", revision=42), NotFound, "release 42"),
        (lambda c: c.rollback("api", version=42), NotFound, "m:42 is not registered"),
        (lambda c: c.rollback("api", component="postprocessor"), NotFound, "postprocessor"),
        (lambda c: c.deploy("api", model="m-1"), BadReference, "MODEL:VERSION"),
        (lambda c: c.deploy("bad name", model="m:1"), BadReference, "invalid deployment name"),
        (lambda c: c.history("api", limit=0), InvalidInput, "limit"),
        (lambda c: c.deploy("new", components={"preprocessor": "prep:1"}), BadReference, "--model"),
    ],
)
def test_bad_requests_change_nothing(
    registered: Client,
    store_url: str,
    home: Path,
    call,
    error,
    message,  # type: ignore[no-untyped-def]
) -> None:
    registered.deploy("api", model="m:1")
    registered.deploy("api", model="m:2")
    before = store_content(store_url, home)
    with pytest.raises(error, match=message):
        call(registered)
    assert store_content(store_url, home) == before


def test_rollback_with_no_earlier_release_changes_nothing(
    registered: Client, store_url: str, home: Path
) -> None:
    registered.deploy("api", model="m:1")
    before = store_content(store_url, home)
    with pytest.raises(NoRollbackTarget, match="no earlier release"):
        registered.rollback()
    assert store_content(store_url, home) == before


def test_leaving_out_the_deployment_needs_exactly_one(registered: Client) -> None:
    with pytest.raises(NotFound, match="no deployment"):
        registered.rollback()
    registered.deploy("a", model="m:1")
    registered.deploy("b", model="m:1")
    with pytest.raises(InvalidInput, match="several deployments"):
        registered.rollback(version=1)


def test_an_unreachable_store_is_a_dependency_failure(home: Path) -> None:
    with pytest.raises(StoreUnavailable, match="cannot reach the store"):
        Client("postgresql+psycopg://nobody@127.0.0.1:1/none", home=home)
