"""The dashboard's actions and guards over plain HTTP against a real `mlops serve`: every
action of the deployment page and the registry, with the roles each needs; where a sign-in
may send the browser; what escapes; what a malformed form gets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from mlops import Client
from tests.server import Server, eventually, running_server

CANARY = {
    "strategy": "canary",
    "steps": [{"set_weight": 10}, {"pause": {}}, {"set_weight": 50}, {"pause": {}}],
    "analysis": {"latency_tolerance": None},
}


@pytest.fixture
def served(
    tmp_path: Path, model_files: dict[str, Path]
) -> Iterator[tuple[Server, Client, dict[str, str]]]:
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    with Client(store_url, home=home) as client:
        client.register("m", model_files["skops"])
        client.register("m", model_files["onnx"])
        client.register("m", model_files["joblib2"], trust=True)
        client.deploy("api", model="m:1", reason="<script>alert(1)</script>")
        tokens = {
            role: client._service.create_token(role, role=role).secret
            for role in ("viewer", "operator", "admin")
        }
        with running_server(store_url, home) as server:
            yield server, client, tokens


OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def new_client(server: Server) -> httpx.Client:
    OPEN.append(httpx.Client(base_url=server.url, timeout=30))
    return OPEN[-1]


def signed_in(server: Server, token: str) -> tuple[httpx.Client, str]:
    """A client holding a session, and the session's CSRF token."""
    http = new_client(server)
    answer = http.post("/ui/login", data={"token": token, "next": "/ui/"})
    assert answer.status_code == 303, answer.text
    page = http.get("/ui/d/api")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return http, found.group(1)


def test_commands_traffic_and_quarantine_through_the_forms(
    served: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, tokens = served
    http, csrf = signed_in(server, tokens["operator"])
    client.deploy("api", model="m:2", rollout=CANARY)
    status = lambda: client.status("api")[0]  # noqa: E731
    eventually(status, lambda s: s.rollout is not None and s.rollout["weight"] == 10.0, 60)
    confirm = http.get("/ui/d/api/confirm", params={"action": "promote"})
    assert confirm.status_code == 200
    assert "step 2 of" in confirm.text
    act = http.post("/ui/d/api/act", data={"csrf": csrf, "action": "promote", "reason": "ok"})
    assert act.status_code == 303
    eventually(status, lambda s: s.rollout is not None and s.rollout["weight"] == 50.0, 60)
    http.post("/ui/d/api/act", data={"csrf": csrf, "action": "promote_full"})
    eventually(status, lambda s: s.rollout is None and s.revision == 2, 60)

    split = {"csrf": csrf, "action": "traffic", "w.2": "80", "w.1": "20", "reason": "compare"}
    assert http.post("/ui/d/api/act", data=split).status_code == 303
    page = http.get("/ui/").text
    assert "r2: 80 %" in page
    assert "r1: 20 %" in page

    quarantine = http.get("/ui/registry/m/2/confirm")
    assert quarantine.status_code == 200
    q = {"csrf": csrf, "lift": "0", "reason": "leaks features"}
    assert http.post("/ui/registry/m/2/act", data=q).status_code == 303
    assert client.versions("m")[1].quarantine_reason == "leaks features"
    # Lifting needs an admin.
    lift = {"csrf": csrf, "lift": "1"}
    refused = http.post("/ui/registry/m/2/act", data=lift)
    assert refused.status_code == 403
    assert client.versions("m")[1].quarantined
    admin, admin_csrf = signed_in(server, tokens["admin"])
    assert "Lift quarantine of m:2" in admin.get("/ui/registry/m").text
    assert admin.post("/ui/registry/m/2/act", data={**lift, "csrf": admin_csrf}).status_code == 303
    assert not client.versions("m")[1].quarantined


def test_what_comes_from_outside_is_escaped_bounded_and_checked(
    served: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, tokens = served
    http, csrf = signed_in(server, tokens["operator"])
    history = http.get("/ui/d/api/history").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in history
    assert "<script>alert(1)" not in history
    assert "script-src 'self'" in http.get("/ui/").headers["content-security-policy"]
    # Sign-in sends the browser only to a page of this dashboard.
    fresh = new_client(server)
    for target in ("//evil.test/ui/", "https://evil.test/", "/ui/\\evil", "/api/v1/tokens"):
        moved = fresh.post("/ui/login", data={"token": tokens["viewer"], "next": target})
        assert moved.headers["location"] == "/ui/", target
    # Malformed and oversized forms change nothing.
    before = [r.revision for r in client.history("api")]
    bad = {"csrf": csrf, "action": "rollback", "target": "revision", "value": "x"}
    assert http.post("/ui/d/api/act", data=bad).status_code == 400
    assert http.post("/ui/d/api/act", data={"csrf": csrf, "action": "drop"}).status_code == 400
    many = {f"f{i}": "1" for i in range(100)}
    assert http.post("/ui/d/api/act", data={"csrf": csrf, **many}).status_code == 400
    form = {"content-type": "application/x-www-form-urlencoded"}
    oversized = http.post("/ui/d/api/act", content=b"a=" + b"x" * 100_000, headers=form)
    assert oversized.status_code == 413
    latin = http.post(
        "/ui/d/api/act",
        content=b"csrf=" + csrf.encode() + b"&action=%ff",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert latin.status_code == 400
    assert http.get("/ui/d/nope").status_code == 404
    assert http.get("/ui/d/bad name").status_code == 400
    assert http.get("/ui/live/elsewhere").status_code == 400
    plain = http.post(
        "/ui/d/api/act",
        content=f"csrf={csrf}&action=rollback".encode(),
        headers={"content-type": "text/plain"},
    )
    assert plain.status_code == 400
    huge = {"csrf": csrf, "action": "traffic", "w.99999999999999999999": "100"}
    assert http.post("/ui/d/api/act", data=huge).status_code == 400
    assert [r.revision for r in client.history("api")] == before


def sessions(client: Client) -> int:
    with client._service.store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM web_sessions")).scalar_one())


def test_a_bearer_without_a_cookie_stores_a_session_only_for_a_browsers_navigation(
    served: tuple[Server, Client, dict[str, str]],
) -> None:
    server, client, tokens = served
    bearer = {"authorization": f"Bearer {tokens['operator']}"}
    http = new_client(server)
    before = sessions(client)
    for _ in range(3):
        page = http.get("/ui/d/api", headers=bearer)
        assert page.status_code == 200
        assert "mlops_session" not in page.headers.get("set-cookie", "")
    # Served as the bearer, with no CSRF token: it can read, and change nothing.
    assert 'name="csrf" value=""' in page.text
    act = http.post("/ui/d/api/act", headers=bearer, data={"action": "rollback", "csrf": ""})
    assert act.status_code == 403
    with http.stream("GET", "/ui/live/d/api", headers=bearer) as stream:
        assert stream.status_code == 200
        first = next(stream.iter_lines())
        assert first.startswith("event: fragment")
    assert sessions(client) == before
    navigated = new_client(server).get("/ui/", headers={**bearer, "sec-fetch-mode": "navigate"})
    assert "mlops_session" in navigated.headers["set-cookie"]
    assert sessions(client) == before + 1
