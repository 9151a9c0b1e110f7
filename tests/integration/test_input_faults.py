"""Whose fault a failure is: inputs that make any model fail cannot roll a good candidate back.

A live `mlops serve` (without its controller) serves real scikit-learn pipelines; the test
drives the real controller's ticks, so it judges exactly the requests sent before each tick.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlops import Client
from mlops.controller.judge import analysis_judge
from mlops.controller.loop import Controller
from tests.models import training_data
from tests.server import Server, Traffic, eventually, running_server

CATEGORIES = [0.0, 1.0, 2.0]
SPEC = {"steps": [{"set_weight": 50}, {"pause": {}}]}


def _rows(n: int, seed: int) -> np.ndarray:
    """Feature 0 is a category code (0, 1 or 2), the others numbers."""
    x, _ = training_data(seed)
    x = x[:n].copy()
    x[:, 0] = np.resize(CATEGORIES, len(x))
    return x


def _pipeline(c: float, known: list[float]) -> Any:
    """One-hot of the category (an unknown one raises), squares of the numbers (a huge one
    overflows to infinity, which the classifier refuses), then a logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures

    x, y = training_data()
    x[:, 0] = np.resize(known, len(x))
    pre = ColumnTransformer(
        [
            ("category", OneHotEncoder(categories=[known], handle_unknown="error"), [0]),
            ("numbers", PolynomialFeatures(2), [1, 2, 3, 4, 5]),
        ]
    )
    return make_pipeline(pre, LogisticRegression(C=c, max_iter=2000)).fit(x, y)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import joblib

    folder = tmp_path_factory.mktemp("faults")
    out = {}
    for name, model in {
        "stable": _pipeline(1.0, CATEGORIES),
        "good": _pipeline(0.05, CATEGORIES),
        # Knows category 0 only: ready on rows of zeros, fails on inputs the stable answers.
        "bad": _pipeline(1.0, [0.0]),
    }.items():
        out[name] = folder / f"{name}.joblib"
        joblib.dump(model, out[name])
    return out


@pytest.fixture
def serving(
    store_url: str, home: Path, pipelines: dict[str, Path]
) -> Iterator[tuple[Client, Server, Controller, Traffic]]:
    with Client(store_url, home=home) as client:
        for name in ("stable", "good", "bad"):
            client.register("m", pipelines[name], trust=True)
        client.deploy("api", model="m:1")
        bodies = [{"instances": [row]} for row in _rows(200, 1).tolist()]
        with (
            running_server(store_url, home, "--no-controller") as server,
            Traffic(server.url, "/v1/models/api:predict", bodies) as traffic,
        ):
            eventually(lambda: len(traffic.seen), lambda n: n > 20, timeout=30)
            yield client, server, Controller(client._service, analysis_judge), traffic


def _key_to(http: httpx.Client, revision: int) -> str:
    """A routing key that the split sends to `revision`."""
    row = _rows(1, 2).tolist()
    for i in range(1000):
        r = http.post(
            "/v1/models/api:predict", json={"instances": row}, headers={"x-routing-key": f"k{i}"}
        )
        if int(r.headers["x-release-revision"]) == revision:
            return f"k{i}"
    raise AssertionError(f"no key routes to revision {revision}")


def _judged(client: Client) -> int:
    """Candidate requests the controller has judged in this step (from its verdict)."""
    rollout = client.status("api")[0].rollout or {}
    for reason in rollout.get("reasons", []):
        found = re.search(r"([\d,]+)(?: ≥ |/)[\d,]+ candidate requests", reason)
        if found:
            return int(found.group(1).replace(",", ""))
    return 0


def _tick_until_judged(client: Client, controller: Controller, at_least: int) -> None:
    def judged() -> int:
        controller.tick()
        return _judged(client)

    eventually(judged, lambda n: n >= at_least or client.status("api")[0].rollout is None, 60)


def _crafted(good_row: list[float]) -> dict[str, list[float]]:
    unknown = [7.0, *good_row[1:]]  # a category no encoder has seen: the preprocessor raises
    huge = [good_row[0], 1e300, *good_row[2:]]  # squared: infinity, which the model refuses
    far = [good_row[0], -1e6, *good_row[2:]]  # far outside training: answered, no failure
    return {"unknown_category": unknown, "overflowing": huge, "out_of_range": far}


def test_crafted_inputs_routed_at_a_good_candidate_cannot_roll_it_back(
    serving: tuple[Client, Server, Controller, Traffic],
) -> None:
    client, server, controller, _ = serving
    client.deploy("api", model="m:2", strategy="canary", rollout=SPEC)
    controller.tick()  # readiness, then 50 % to the candidate
    eventually(
        lambda: client.status("api")[0].rollout, lambda r: r is not None and r["weight"] == 50
    )
    with server.client() as http:
        eventually(
            lambda: http.get("/v1/gateway").json()["deployments"]["api"]["split"]["weights"],
            lambda weights: weights.get("2") == 50.0,
        )
        key = _key_to(http, 2)
        answers: dict[str, set[int]] = {}
        row = _rows(1, 3).tolist()[0]
        huge = _crafted(row)["overflowing"]
        for _ in range(60):
            for kind, crafted in _crafted(row).items():
                r = http.post(
                    "/v1/models/api:predict",
                    json={"instances": [crafted]},
                    headers={"x-routing-key": key},
                )
                assert r.headers["x-release-revision"] == "2"
                answers.setdefault(kind, set()).add(r.status_code)
        # Asked for by version, these are measured apart and never judged (finding 3): as
        # live requests, 60 failures of the candidate alone would roll it back.
        v2 = {"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64", "data": huge}]}
        for _ in range(60):
            r = http.post("/v2/models/api/versions/2/infer", json=v2)
            assert (r.status_code, r.headers["x-release-revision"]) == (500, "2")
    assert answers == {"unknown_category": {422}, "overflowing": {422}, "out_of_range": {200}}

    def candidate() -> Any:
        return next(
            (
                m
                for m in client.measurements("api", window_s=600)
                if m.revision == 2 and m.role == "live"
            ),
            None,
        )

    measured = eventually(
        candidate, lambda m: m is not None and m.errors.get("rejected", 0) >= 120, 30
    )
    assert measured.errors.get("exception", 0) == 0

    def pinned() -> Any:
        return next(
            (m for m in client.measurements("api", window_s=600) if m.role == "pinned"), None
        )

    assert eventually(pinned, lambda m: m is not None and m.errors.get("exception", 0) == 60, 30)
    _tick_until_judged(client, controller, measured.judged)

    status = client.status("api")[0]
    assert status.rollout is not None, [e.reason for e in client.events("api", limit=3)]
    assert status.rollout["outcome"] != "fail"
    assert not client.versions("m")[1].quarantined
    client.promote("api", full=True)
    controller.tick()
    assert client.status("api")[0].revision == 2


def test_a_candidate_that_fails_where_the_stable_answers_is_still_rolled_back(
    serving: tuple[Client, Server, Controller, Traffic],
) -> None:
    client, _, controller, _ = serving
    client.deploy("api", model="m:3", strategy="canary", rollout=SPEC)

    def ended() -> bool:
        controller.tick()
        return client.status("api")[0].rollout is None

    eventually(ended, bool, timeout=60)
    status = client.status("api")[0]
    assert status.revision == 1  # the candidate, revision 2, never became stable
    rollback = next(e for e in client.events("api") if e.action == "rollback")
    assert (rollback.trigger, rollback.from_revision, rollback.to_revision) == ("analysis", 2, 1)
    assert rollback.reason is not None, rollback
    assert rollback.reason.startswith("errors"), rollback.reason
    assert client.versions("m")[0].quarantined  # newest first: m:3
