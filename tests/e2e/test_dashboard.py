"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a real
`mlops serve` with real models: signing in and out, a bad canary rolled back on the page
live, a rollback by button after its dry run, what a viewer and another origin may not do,
and an accessible name on every control."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_api

from mlops import Client
from tests.models import training_data
from tests.server import SETTLE_S, Server, Traffic, running_server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = SETTLE_S * 1000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM.exists(), (
        "the dashboard tests need Debian's chromium (scripts/test installs it)"
    )
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class Site:
    def __init__(self, server: Server, client: Client, tokens: dict[str, str]) -> None:
        self.server, self.client, self.tokens = server, client, tokens

    def sign_in(self, browser: Any, who: str, then: str = "/ui/") -> Any:
        page = browser.new_context(base_url=self.server.url).new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(then)
        page.get_by_label("API token or identity-provider JWT").fill(self.tokens[who])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(re.escape(then) + "$"))
        return page


@pytest.fixture
def site(tmp_path: Path, model_files: dict[str, Path]) -> Iterator[Site]:
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    with Client(store_url, home=home) as client:
        client.register("m", model_files["skops"])
        client.register("m", model_files["onnx"])
        client.register("m", model_files["fails_live"], trust=True)
        client.deploy("api", model="m:1")
        client.deploy("api", model="m:2")
        service = client._service
        tokens = {
            role: service.create_token(role, role=role).secret
            for role in ("viewer", "operator", "admin")
        }
        with running_server(store_url, home) as server:
            yield Site(server, client, tokens)


CANARY = {
    "strategy": "canary",
    "steps": [{"set_weight": 50}, {"pause": {"duration": "10m"}}],
    "progress_deadline": "20m",
    "analysis": {"latency_tolerance": None},
}


def test_a_bad_canary_is_watched_and_rolled_back_on_the_page_without_reloading(
    site: Site, browser: Any
) -> None:
    page = site.sign_in(browser, "operator", "/ui/d/api")
    assert page.locator("#rollout").inner_text().count("No rollout yet") == 1
    page.locator("#live-status", has_text="Live").wait_for()
    page.evaluate("window.__not_reloaded = true")
    site.client.deploy("api", model="m:3", rollout=CANARY)
    page.locator("#rollout-phase", has_text="progressing").wait_for()
    rows = training_data()[0][:50].tolist()
    bodies = [{"instances": [row]} for row in rows]
    with Traffic(site.server.url, "/v1/models/api:predict", bodies):
        page.locator("#rollout-phase", has_text="rolled_back").wait_for()
    assert page.evaluate("window.__not_reloaded") is True
    ending = page.locator("#ending").inner_text()
    assert "analysis" in ending
    assert "errors: candidate worse" in ending
    # The analysis trajectory stays after the end: the check's chart against its threshold.
    charts = page.locator("#checks svg[role=img]")
    assert charts.count() >= 1
    assert "fails at" in page.locator("#checks").inner_html()
    assert page.locator('#checks svg[aria-label^="errors: e-value"]').count() == 1
    # The trajectory behind the chart: the e-value climbed to the bound at which it failed.
    story = site.client._service.rollout_story("api")
    assert story is not None
    errors = [c for _, p in story.points for c in p["checks"] if c["name"] == "errors"]
    climb = [c["e_value"] for c in errors]
    assert climb == sorted(climb)
    assert climb[-1] >= errors[-1]["e_bound"]
    assert "rollback" in page.locator("#events").inner_text()
    # Opened afterwards, a page shows the whole story too.
    late = site.sign_in(browser, "viewer", "/ui/d/api")
    assert late.locator("#checks svg[role=img]").count() == charts.count()


def test_a_rollback_to_a_revision_by_button_shows_its_dry_run_and_records_who_and_why(
    site: Site, browser: Any
) -> None:
    page = site.sign_in(browser, "operator", "/ui/d/api")
    page.get_by_label("Roll back to").select_option("revision")
    page.get_by_label("Revision, version or component").fill("1")
    page.get_by_role("button", name="Review rollback…").click()
    page.wait_for_url(re.compile(r"/ui/d/api/confirm\?"))
    dry = page.locator(".dry-run").inner_text()
    assert "dry run: nothing has changed yet" in dry
    assert "a new revision r3 with the components of r1" in dry
    assert "m:2" in dry
    assert "m:1" in dry
    assert [r.revision for r in site.client.history("api")] == [2, 1]  # nothing yet
    page.get_by_label("Reason (kept in the history)").fill("r2 scores drifted")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(re.compile(r"/ui/d/api$"))
    latest = site.client.history("api", limit=1)[0]
    assert (latest.revision, latest.source_revision) == (3, 1)
    assert latest.event is not None
    assert (latest.event.actor, latest.event.actor_source) == ("token:operator", "token")
    assert latest.event.reason == "r2 scores drifted"
    page.get_by_role("link", name="History, events and data").click()
    row = page.locator("#r3").inner_text()
    assert "token:operator" in row
    assert "r2 scores drifted" in row


def _csrf(page: Any) -> str:
    value: str = page.locator("input[name=csrf]").first.get_attribute("value")
    return value


def test_a_viewer_sees_no_action_and_its_session_cannot_take_one(site: Site, browser: Any) -> None:
    page = site.sign_in(browser, "viewer", "/ui/d/api")
    assert "cannot change it" in page.locator("#actions").inner_text()
    assert page.locator("#actions form").count() == 0
    page.goto("/ui/registry/m")
    assert page.get_by_role("link", name=re.compile("Quarantine")).count() == 0
    form = {"csrf": _csrf(page), "action": "rollback", "target": "revision", "value": "1"}
    answer = page.request.post("/ui/d/api/act", form=form, max_redirects=0)
    assert answer.status == 403
    assert "has role viewer; this needs operator" in answer.text()
    confirm = page.goto("/ui/d/api/confirm?action=rollback")
    assert confirm is not None
    assert confirm.status == 403
    assert [r.revision for r in site.client.history("api")] == [2, 1]


class _Attacker(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = (
            f'<form id="f" method="post" action="{self.target}">'
            '<input name="action" value="rollback"><input name="target" value="revision">'
            '<input name="value" value="1"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_an_operators_session_used_from_another_origin_is_refused(site: Site, browser: Any) -> None:
    page = site.sign_in(browser, "operator", "/ui/d/api")
    _Attacker.target = f"{site.server.url}/ui/d/api/act"
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with page.expect_response(lambda r: r.url.endswith("/ui/d/api/act")) as answer:
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert answer.value.status == 403
        assert "cross-origin request refused" in answer.value.text()
    finally:
        evil.shutdown()
        evil.server_close()
    # The same session, from its own origin but without the form's CSRF token: refused too.
    form = {"action": "rollback", "target": "revision", "value": "1"}
    bare = page.request.post("/ui/d/api/act", form=form, max_redirects=0)
    assert bare.status == 403
    assert "CSRF token is missing" in bare.text()
    assert [r.revision for r in site.client.history("api")] == [2, 1]


def test_a_wrong_token_cannot_sign_in(site: Site, browser: Any) -> None:
    context = browser.new_context(base_url=site.server.url)
    page = context.new_page()
    page.goto("/ui/")
    page.wait_for_url(re.compile(r"/ui/login"))
    page.get_by_label("API token or identity-provider JWT").fill("mlops_0123456789ab_" + "A" * 43)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401
    assert "invalid token" in page.get_by_role("alert").inner_text()
    assert not [c for c in context.cookies() if c["name"] == "mlops_session"]
    assert page.goto("/ui/d/api").url.endswith("/ui/login?next=%2Fui%2Fd%2Fapi")  # type: ignore[union-attr]


def test_the_session_cookie_is_httponly_strict_and_ends_on_sign_out_and_on_revocation(
    site: Site, browser: Any
) -> None:
    page = site.sign_in(browser, "admin", "/ui/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "mlops_session")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
    assert cookie["expires"] > 0
    assert page.evaluate("document.cookie") == ""
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/login$"))
    # The old cookie, replayed, no longer signs anyone in.
    replay = browser.new_context(base_url=site.server.url)
    replay.add_cookies([{**cookie}])
    assert "/ui/login" in replay.new_page().goto("/ui/").url  # type: ignore[union-attr]

    live = site.sign_in(browser, "operator", "/ui/d/api")
    live.locator("#live-status", has_text="Live").wait_for()
    site.client._service.revoke_token("operator", reason="left the team")
    live.wait_for_url(re.compile(r"/ui/login"))
    assert "/ui/login" in live.goto("/ui/d/api").url


INTERACTIVE = ("link", "button", "textbox", "combobox", "checkbox", "radio", "spinbutton")


def unnamed_controls(page: Any) -> list[str]:
    tree: str = page.locator("body").aria_snapshot()
    out = []
    for line in tree.splitlines():
        item = line.strip().removeprefix("- ")
        role = item.split(" ", 1)[0].rstrip(":")
        if role in INTERACTIVE and not re.match(rf'{role} "[^"]+"', item):
            out.append(item)
    return out


def test_every_control_has_an_accessible_name(site: Site, browser: Any) -> None:
    page = site.sign_in(browser, "admin", "/ui/")
    for path in (
        "/ui/",
        "/ui/d/api",
        "/ui/d/api/history",
        "/ui/registry",
        "/ui/registry/m",
        "/ui/d/api/confirm?action=rollback&target=previous",
        "/ui/d/api/confirm?action=traffic&w.2=90&w.1=10",
    ):
        page.goto(path)
        assert page.locator("main").count() == 1
        assert unnamed_controls(page) == [], path
    page.goto("/ui/d/api")
    assert page.locator("#actions select").count() >= 1
    page.context.clear_cookies()
    page.goto("/ui/login")
    assert unnamed_controls(page) == []


def test_a_caller_arriving_through_an_authenticating_proxy_is_signed_in_by_its_jwt(
    tmp_path: Path, model_files: dict[str, Path], browser: Any
) -> None:
    from tests import jwts

    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    home.mkdir()
    keys = jwts.write_jwks(home / "jwks.json", jwts.default_keys())
    with Client(store_url, home=home) as client:
        client.register("m", model_files["skops"])
        client.register("m", model_files["onnx"])
        client.deploy("api", model="m:1")
        client.deploy("api", model="m:2")
        with running_server(store_url, home, *jwts.sso_args(keys)) as server:
            operator = jwts.mint(jwts.Claims(sub="op@corp", groups=["ml-ops"]))
            proxied = browser.new_context(
                base_url=server.url, extra_http_headers={"authorization": f"Bearer {operator}"}
            )
            page = proxied.new_page()
            page.goto("/ui/d/api")
            assert page.url.endswith("/ui/d/api")
            assert "jwt:op@corp" in page.locator("header").inner_text()
            page.get_by_label("Roll back to").select_option("previous")
            page.get_by_role("button", name="Review rollback…").click()
            page.get_by_label("Reason (kept in the history)").fill("via the proxy")
            page.get_by_role("button", name="Confirm").click()
            page.wait_for_url(re.compile(r"/ui/d/api$"))
            event = client.history("api", limit=1)[0].event
            assert event is not None
            assert (event.actor, event.actor_source, event.reason) == (
                "jwt:op@corp",
                "jwt",
                "via the proxy",
            )
            # A JWT from another issuer signs nobody in.
            forged = jwts.mint(jwts.Claims(sub="op@corp", groups=["ml-ops"], iss="https://evil"))
            other = browser.new_context(
                base_url=server.url, extra_http_headers={"authorization": f"Bearer {forged}"}
            )
            assert "/ui/login" in other.new_page().goto("/ui/d/api").url  # type: ignore[union-attr]
