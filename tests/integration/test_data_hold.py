"""A rollout whose automatic rollback the data's `freeze` policy refuses is held: the candidate
is taken off traffic, the team is told, and nothing else changes until a person acts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mlops import Client
from mlops.controller.loop import Controller
from mlops.rollout_spec import load_spec
from tests.integration.test_controller import STEPS, Clock, error_rate_judge, measure

MIGRATE = "UPDATE features SET amount = amount * 2;"


def amounts(path: Path) -> list[float]:
    with sqlite3.connect(path) as conn:
        found = [r[0] for r in conn.execute("SELECT amount FROM features ORDER BY id")]
    conn.close()
    return found


@pytest.fixture
def frozen(client: Client, model_files: dict[str, Path], tmp_path: Path) -> Path:
    features = tmp_path / "features.db"
    with sqlite3.connect(features) as conn:
        conn.execute("CREATE TABLE features (id INTEGER PRIMARY KEY, amount REAL)")
        conn.executemany("INSERT INTO features VALUES (?, ?)", [(i, i + 0.5) for i in range(50)])
    conn.close()
    client.register("m", model_files["joblib"], trust=True)
    client.register("m", model_files["joblib2"], trust=True)
    client.deploy("api", model="m:1")
    client.add_data("api", "features", sqlite=features, policy="freeze")
    migration = tmp_path / "migrate.sql"
    migration.write_text(MIGRATE)
    client._service.deploy(
        "api",
        model=client.versions("m")[0].ref,
        rollout=load_spec(STEPS, strategy="canary"),
        migration=str(migration),
    )
    return features


def test_a_refused_automatic_rollback_holds_the_rollout_off_traffic(
    client: Client, frozen: Path
) -> None:
    migrated = amounts(frozen)
    clock = Clock()
    controller = Controller(client._service, error_rate_judge, clock=clock)
    assert "candidate 2 at 20%" in controller.tick()[0]
    measure(client, 2, 30, errors=25)
    clock.now += 1
    assert controller.tick() == ["api: candidate 2 at 0% (mirror 0%)"]

    status = client.status("api")[0]
    assert status.revision == 1
    assert status.rollout is not None
    assert status.rollout["phase"] == "paused"
    assert status.rollout["weight"] == 0
    held = client.events("api", limit=1)[0]
    assert held.action == "rollout_paused"
    assert held.reason is not None
    assert held.reason.startswith("held: analysis: ")
    assert "data resource 'features' has policy freeze" in held.reason
    assert not any(e.action == "rollback" for e in client.events("api"))
    assert amounts(frozen) == migrated
    assert client.snapshots("api")[0].status == "ready"

    measure(client, 2, 30, errors=30)  # still failing: held once, not again each tick
    clock.now += 1
    assert controller.tick() == []
    assert client.events("api", limit=1)[0].id == held.id

    client.add_data("api", "features", sqlite=frozen, policy="restore")
    client.abort("api", reason="data may go back now")
    clock.now += 1
    lines = controller.tick()
    assert any("revision 2 aborted" in line for line in lines)
    assert client.status("api")[0].rollout is None
    assert [round(a - 0.5) for a in amounts(frozen)] == list(range(50))
    assert client.snapshots("api")[0].status == "restored"
