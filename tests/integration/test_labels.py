"""Delayed labels come only from the deployment's own served predictions (a live `mlops serve`).

Labels decide a candidate's accuracy, so whoever may post them could steer a rollout: a label
is kept only for a request id that this deployment answered and logged, once, and a request
id a client chose never meets another deployment's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops import Client
from tests.models import training_data
from tests.server import Server, eventually, running_server

ROWS = training_data()[0][:8].tolist()


@pytest.fixture
def served(
    store_url: str, home: Path, model_files: dict[str, Path]
) -> Iterator[tuple[Client, Server, httpx.Client]]:
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.register("m", model_files["joblib2"], trust=True)
        for name in ("a", "b"):
            client.deploy(name, model="m:1")
        with (
            running_server(store_url, home, "--labels-per-second", "20") as server,
            server.client() as http,
        ):
            labeller = client._service.create_token("labeller", role=None, scopes=["feedback"])
            http.headers["authorization"] = f"Bearer {labeller.secret}"
            yield client, server, http


def _predict(http: httpx.Client, deployment: str, request_id: str | None = None) -> Any:
    headers = {"x-request-id": request_id} if request_id else {}
    r = http.post(
        f"/v1/models/{deployment}:predict", json={"instances": [ROWS[0]]}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"], r.json()["predictions"][0]


def _label(http: httpx.Client, deployment: str, request_id: str, label: Any) -> httpx.Response:
    return http.post(f"/v1/feedback/{deployment}", json={"request_id": request_id, "label": label})


def _labelled(client: Client, deployment: str) -> tuple[int, int]:
    live = [m for m in client.measurements(deployment, window_s=600) if m.role == "live"]
    return sum(m.labelled for m in live), sum(m.correct for m in live)


def test_a_label_needs_a_request_the_deployment_served_and_is_kept_once(
    served: tuple[Client, Server, httpx.Client],
) -> None:
    client, _, http = served
    served_id, prediction = _predict(http, "a")  # labelled at once, before any flush
    assert _label(http, "a", served_id, prediction).status_code == 202
    second = _label(http, "a", served_id, 1 - prediction)
    assert second.status_code == 409, second.text
    assert "labelled already" in second.json()["error"]

    never = _label(http, "a", "never-served", 1)
    assert never.status_code == 404, never.text
    # Another deployment's answer cannot be labelled through this one's URL.
    assert _label(http, "b", served_id, 1 - prediction).status_code == 404

    eventually(lambda: _labelled(client, "a"), lambda found: found == (1, 1), 30)
    assert _labelled(client, "b") == (0, 0)


def test_a_label_without_a_feedback_token_for_the_deployment_is_refused_and_not_kept(
    served: tuple[Client, Server, httpx.Client],
) -> None:
    client, server, http = served
    served_id, prediction = _predict(http, "a")
    viewer = client._service.create_token("viewer", role="viewer").secret
    only_b = client._service.create_token("b-only", role=None, scopes=["feedback"], deployments="b")
    body = {"request_id": served_id, "label": 1 - prediction}
    with server.client() as outsider:
        for headers, status in [
            ({}, 401),
            ({"authorization": "Bearer mlops_nonsense"}, 401),
            ({"authorization": f"Bearer {viewer}"}, 403),
            ({"authorization": f"Bearer {only_b.secret}"}, 403),
        ]:
            refused = outsider.post("/v1/feedback/a", json=body, headers=headers)
            assert refused.status_code == status, refused.text
    denied = [e for e in client.events("a", limit=20) if e.action == "access_denied"]
    assert len(denied) == 4
    # The request stays unlabelled: the labeller's own label is the first, and is kept.
    assert _label(http, "a", served_id, prediction).status_code == 202
    eventually(lambda: _labelled(client, "a"), lambda found: found == (1, 1), 30)


def test_a_request_id_a_client_chose_never_meets_another_deployments(
    served: tuple[Client, Server, httpx.Client],
) -> None:
    client, _, http = served
    _, prediction_a = _predict(http, "a", "chosen-id")
    _, prediction_b = _predict(http, "b", "chosen-id")
    assert _label(http, "a", "chosen-id", prediction_a).status_code == 202  # right for a
    assert _label(http, "b", "chosen-id", 1 - prediction_b).status_code == 202  # wrong for b
    eventually(lambda: _labelled(client, "a"), lambda found: found == (1, 1), 30)
    eventually(lambda: _labelled(client, "b"), lambda found: found == (1, 0), 30)


BAD_LABELS = [
    ({"class": 1}, 400),
    ([1, 0], 400),
    (None, 400),
    ("x" * 257, 400),
    (2**64, 400),
    (1e300, 400),
    ("x" * 5000, 413),
]


def test_a_label_is_a_class_or_a_finite_number_in_a_small_body(
    served: tuple[Client, Server, httpx.Client],
) -> None:
    client, _, http = served
    served_id, _ = _predict(http, "a")
    for label, status in BAD_LABELS:
        response = _label(http, "a", served_id, label)
        assert response.status_code == status, (label, response.text)
        assert "error" in response.json()
    assert _label(http, "a", served_id, 1).status_code == 202  # nothing was kept before
    eventually(lambda: _labelled(client, "a"), lambda found: found[0] == 1, 30)


def test_labels_are_rate_limited_per_deployment(
    served: tuple[Client, Server, httpx.Client],
) -> None:
    _, _, http = served
    ids = [_predict(http, "a")[0] for _ in range(30)]
    answers = [_label(http, "a", request_id, 1) for request_id in ids]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]  # 30 at once, 20 a second allowed
    assert limited[0].headers["retry-after"] == "1"
    assert all(r.status_code in (202, 429) for r in answers)
    # Another deployment has its own allowance.
    other = _predict(http, "b")[0]
    assert _label(http, "b", other, 1).status_code == 202


def test_a_pinned_version_is_measured_apart_from_live_traffic(
    served: tuple[Client, Server, httpx.Client],
) -> None:
    client, _, http = served
    client.deploy("a", model="m:2")  # revision 2
    client.set_traffic("a", {2: 100}, shadows={1: 100})  # revision 1 gets copies only
    eventually(
        lambda: http.get("/v1/gateway").json()["deployments"]["a"]["split"]["shadows"],
        lambda shadows: shadows == {"1": 100.0},
    )
    v2 = {"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64", "data": ROWS[1]}]}
    for _ in range(5):
        r = http.post("/v2/models/a/versions/1/infer", json=v2)
        assert (r.status_code, r.headers["x-release-revision"]) == (200, "1")
    assert _label(http, "a", r.headers["x-request-id"], 1).status_code == 202
    for unserved in ("3", "01x", "9" * 40):
        missing = http.post(f"/v2/models/a/versions/{unserved}/infer", json=v2)
        assert missing.status_code == 404, unserved

    def by_role() -> dict[tuple[int, str], int]:
        return {(m.revision, m.role): m.requests for m in client.measurements("a", window_s=600)}

    found = eventually(by_role, lambda found: found.get((1, "pinned")) == 5, 30)
    assert (1, "live") not in found  # never counted as routed traffic
    assert (1, "shadow") not in found  # nor mirrored
