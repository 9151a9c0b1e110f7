"""The one prediction path without HTTP: route, batch, run, blame, measure. A second transport
calls exactly this."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest

from mlops.core.payload import Decoded
from mlops.core.routing import Split
from mlops.errors import NotRouted
from mlops.gateway.prediction import PredictionPath
from mlops.gateway.routes import DeploymentRoute, LiveTable, Target
from mlops.runtime import LoadedVersion, MicroBatcher, make_pipeline
from tests.fake_flavor import FakeFlavor, FakeModel
from tests.unit.test_flavors import record


class Recorded:
    """A recording `Measurements`."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def record(self, **values: Any) -> None:
        self.rows.append(values)


class Failing(FakeFlavor):
    def predict(self, model: Any, rows: np.ndarray, *args: Any) -> np.ndarray:
        raise RuntimeError("the model is broken")


def table(flavor: FakeFlavor) -> LiveTable:
    version = LoadedVersion(record("fake", id=1), FakeModel(2.0), {"fake": flavor})
    pipeline = make_pipeline([("model", version)])
    target = Target("fraud", 1, 3, pipeline, MicroBatcher(pipeline))
    route = DeploymentRoute("fraud", 1, 3, Split.only(3), {3: target})
    return LiveTable(seq=1, deployments={"fraud": route})


def test_a_request_is_routed_run_and_measured() -> None:
    measured = Recorded()
    live = table(FakeFlavor())
    path = PredictionPath(lambda: live, measured, timeout_s=5.0)

    async def ask() -> Any:
        routed = path.route("fraud", "req-1", key=None)
        return routed, await path.predict(routed, Decoded(np.array([[1.0, 2.0]])))

    routed, answer = asyncio.run(ask())
    assert (routed.role, routed.target.revision) == ("live", 3)
    assert answer.failure is None
    assert answer.outputs is not None
    assert answer.outputs.tolist() == [6.0]
    (row,) = measured.rows
    assert (row["revision"], row["error"], row["request_id"], row["role"]) == (
        3,
        None,
        "req-1",
        "live",
    )


def test_unknown_deployments_and_versions_are_not_routed() -> None:
    live = table(FakeFlavor())
    path = PredictionPath(lambda: live, Recorded(), timeout_s=5.0)
    with pytest.raises(NotRouted, match="deployment 'other' not found"):
        path.route("other", "req-1", key=None)
    with pytest.raises(NotRouted, match="serves version '9'"):
        path.route("fraud", "req-1", key=None, version="9")
    assert path.route("fraud", "req-1", key=None, version="1").role == "pinned"


def test_a_model_failure_is_logged_at_warning_with_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    measured = Recorded()
    live = table(Failing())
    path = PredictionPath(lambda: live, measured, timeout_s=5.0)

    async def ask() -> Any:
        routed = path.route("fraud", "req-2", key=None)
        return await path.predict(routed, Decoded(np.array([[1.0, 2.0]])))

    with caplog.at_level(logging.WARNING, logger="mlops.gateway"):
        answer = asyncio.run(ask())
    assert answer.failure is not None
    assert answer.failure[:2] == ("exception", 500)
    assert "broken" not in answer.failure[2]
    assert [r["error"] for r in measured.rows] == ["exception"]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "req-2" in line
    assert "RuntimeError: the model is broken" in line
