"""Single sign-on on a real `mlops serve`: bearer JWTs of an identity provider (its keys made
here, in a JWKS file or behind a JWKS URL) act on the control API and the gateway as their
groups allow, with `jwt:<subject>` as the actor; every forged, stale or misdirected JWT is
refused with 401 (recorded, the store otherwise unchanged); a key rotation at the URL is picked
up; and `mlops serve` refuses an unsafe SSO configuration before it starts."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops import Client
from mlops.api.operations import MOUNT, VERSION
from mlops.core.sso import JWT_MAX, LEEWAY_S
from tests import jwts
from tests.integration.test_api import store_dump
from tests.jwts import Claims
from tests.server import SETTLE_S, Cli, Server, eventually, running_server, server_env

_addresses = itertools.count(1)
ROW = {"instances": [[0.1, -0.2, 0.3, 0.4, -0.5, 0.6]]}


def call(
    server: Server, method: str, path: str, bearer: str | None, body: Any = None
) -> httpx.Response:
    """A request from an address of its own (the server trusts 127.0.0.1 as a proxy), so the
    limit on failed attempts per address decides no test here."""
    n = next(_addresses)
    headers = {"x-forwarded-for": f"10.8.{n // 250}.{n % 250 + 1}"}
    if bearer is not None:
        headers["authorization"] = f"Bearer {bearer}"
    with server.client() as http:
        return http.request(method, path, json=body, headers=headers)


def api(server: Server, method: str, path: str, bearer: str | None, body: Any = None) -> int:
    return call(server, method, MOUNT + VERSION + path, bearer, body).status_code


def mint(sub: str, *groups: str, **claims: Any) -> str:
    return jwts.mint(Claims(sub=sub, groups=list(groups), **claims))


@pytest.fixture
def client(store_url: str, home: Path, model_files: dict[str, Path]) -> Iterator[Client]:
    with Client(store_url, home=home) as made:
        made.register("m", model_files["skops"])
        made.register("m", model_files["onnx"])
        made.deploy("api", model="m:1")
        made.deploy("other", model="m:1")
        yield made


@contextmanager
def sso_server(store_url: str, home: Path, jwks: str | Path, *args: str) -> Iterator[Server]:
    sso = jwts.sso_args(jwks)
    with running_server(store_url, home, "--trusted-proxy", "127.0.0.1", *sso, *args) as server:
        yield server


def test_callers_act_as_their_groups_allow_and_are_recorded_as_jwt_subjects(
    client: Client, store_url: str, home: Path
) -> None:
    keys = jwts.write_jwks(home / "jwks.json", jwts.default_keys())
    viewer = mint("vi@corp", "ml-viewers")
    operator = jwts.mint(Claims(sub="op@corp", groups=["ml-ops"]), kid="ec-1")  # ES256
    admin = mint("boss@corp", "ml-admins")
    caller = mint("app@corp", "ml-predict")
    with sso_server(store_url, home, keys, "--predict-token") as server:
        assert api(server, "GET", "/deployments/api", viewer) == 200
        refused = call(server, "POST", f"{MOUNT}{VERSION}/deployments/api/rollback", viewer, {})
        assert refused.status_code == 403
        assert refused.json()["detail"] == "jwt 'vi@corp' has role viewer; this needs operator"
        assert api(server, "POST", "/deployments/api/deploy", operator, {"model": "m:2"}) == 201
        assert api(server, "POST", "/deployments/api/rollback", operator, {"version": 1}) == 201
        assert api(server, "POST", "/deployments/other/deploy", operator, {"model": "m:2"}) == 403
        made = {"name": "ci", "role": "viewer"}
        assert api(server, "POST", "/tokens", operator, made) == 403
        assert api(server, "POST", "/tokens", admin, made) == 201
        assert call(server, "POST", "/v1/models/api:predict", caller, ROW).status_code == 200
        assert call(server, "POST", "/v1/models/api:predict", viewer, ROW).status_code == 403
        assert call(server, "POST", "/v1/models/api:predict", None, ROW).status_code == 401
    events = [(e.action, e.actor, e.actor_source) for e in client.events(limit=20)]
    assert ("deploy", "jwt:op@corp", "jwt") in events
    assert ("rollback", "jwt:op@corp", "jwt") in events
    assert ("token_create", "jwt:boss@corp", "jwt") in events
    assert ("access_denied", "jwt:vi@corp", "jwt") in events
    assert ("access_denied", "jwt:op@corp", "jwt") in events
    assert client.status("api")[0].revision == 3
    assert client.status("other")[0].revision == 1


def refused_jwts() -> dict[str, tuple[str, str]]:
    """What each bearer value is, and the reason its refusal gives."""
    p384 = jwts.ec_key("p384", "P-384")
    return {
        "expired": (mint("a", "ml-admins", exp_in=-LEEWAY_S - 60), "has expired"),
        "not yet valid": (mint("a", "ml-admins", nbf_in=LEEWAY_S + 60), "not valid yet"),
        "another issuer": (mint("a", "ml-admins", iss="https://evil.test"), "issuer"),
        "another audience": (mint("a", "ml-admins", aud="another-app"), "another audience"),
        "alg none": (jwts.unsigned(Claims(groups=["ml-admins"])), "algorithm is not accepted"),
        "PS256": (jwts.mint(Claims(groups=["ml-admins"]), algorithm="PS256"), "not accepted"),
        "ES384": (jwts.mint(kid="ec-1", key=p384, algorithm="ES384"), "not accepted"),
        "HS256 with the public key": (jwts.key_confusion(), "algorithm is not accepted"),
        "bad signature": (jwts.flipped(mint("a", "ml-admins")), "signature does not verify"),
        "unknown kid": (jwts.mint(Claims(groups=["ml-admins"]), kid="rsa-9"), "key id (kid)"),
        "malformed": ("bm90IGpzb24.bm90IGpzb24.c2ln", "malformed JWT"),
        "oversized": (mint("a", *(["ml-admins"] * 900)), f"longer than {JWT_MAX}"),
    }


def test_forged_stale_and_misdirected_jwts_are_refused_and_change_nothing(
    client: Client, store_url: str, home: Path
) -> None:
    keys = jwts.write_jwks(home / "jwks.json", jwts.default_keys())
    cases = refused_jwts()
    before = store_dump(store_url)
    with sso_server(store_url, home, keys) as server:
        for what, (bearer, reason) in cases.items():
            response = call(
                server, "POST", f"{MOUNT}{VERSION}/deployments/api/deploy", bearer, {"model": "m:2"}
            )
            assert response.status_code == 401, (what, response.text)
            assert response.headers["www-authenticate"] == 'Bearer realm="mlops"'
            detail = response.json()["detail"]
            assert reason in detail, (what, detail)
            assert all(part not in detail for part in bearer.split(".") if part), what
        nobody = call(server, "GET", f"{MOUNT}{VERSION}/deployments/api", mint("x@corp", "none"))
        assert nobody.status_code == 403
        assert nobody.json()["detail"] == "jwt 'x@corp' has no role; this needs viewer"
    assert store_dump(store_url) == before
    denied = [e for e in client.events("api", limit=50) if e.action == "access_denied"]
    assert len(denied) == len(cases) + 1
    assert {e.actor for e in denied} == {"anonymous", "jwt:x@corp"}


def test_without_jwt_options_a_jwt_is_refused_with_the_way_to_accept_them(
    client: Client, store_url: str, home: Path
) -> None:
    with running_server(store_url, home) as server:
        response = call(server, "GET", f"{MOUNT}{VERSION}/models", mint("a", "ml-admins"))
    assert response.status_code == 401
    assert response.json()["detail"] == (
        "JWTs are not accepted here: start mlops serve with --jwt-jwks"
    )


def test_a_jwt_stops_being_accepted_when_it_expires(
    client: Client, store_url: str, home: Path
) -> None:
    keys = jwts.write_jwks(home / "jwks.json", jwts.default_keys())
    with sso_server(store_url, home, keys) as server:
        soon = mint("a@corp", "ml-viewers", exp_in=-LEEWAY_S + 6, iat_in=-60)
        assert api(server, "GET", "/models", soon) == 200
        eventually(lambda: api(server, "GET", "/models", soon), lambda s: s == 401, SETTLE_S)
        assert api(server, "GET", "/models", mint("a@corp", "ml-viewers")) == 200


class JwksHost:
    """A JWKS served over plain http on 127.0.0.1, as an identity provider would serve it."""

    def __init__(self, keys: dict[str, jwts.PrivateKey]) -> None:
        self.document = jwts.jwks(keys)
        self.fetches = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(host.document).encode()
                host.fetches += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> JwksHost:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.http.shutdown()
        self.http.server_close()


def test_keys_are_fetched_from_a_jwks_url_and_a_rotation_is_picked_up(
    client: Client, store_url: str, home: Path
) -> None:
    old = mint("a@corp", "ml-viewers")
    new = jwts.mint(Claims(sub="a@corp", groups=["ml-viewers"]), kid="rsa-2", key=jwts.rsa_key("2"))
    with JwksHost({"rsa-1": jwts.rsa_key()}) as idp, sso_server(store_url, home, idp.url) as server:

        def status(bearer: str) -> int:
            return api(server, "GET", "/models", bearer)

        assert status(old) == 200
        assert idp.fetches == 1
        assert status(old) == 200
        assert idp.fetches == 1  # the keys are kept
        idp.document = jwts.jwks({"rsa-2": jwts.rsa_key("2")})
        eventually(lambda: status(new), lambda s: s == 200, SETTLE_S)
        assert idp.fetches >= 2
        eventually(lambda: status(old), lambda s: s == 401, SETTLE_S)  # its key is gone


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--jwt-algorithms", "RS256,HS256"], "HS256 is refused"),
        (["--jwt-algorithms", "none"], "unsigned JWTs ('none') are never accepted"),
        (["--jwt-jwks", "http://idp.corp.test/jwks.json"], "only to a loopback host"),
        (["--jwt-role", "ml=root:*"], "unknown role or scope 'root'"),
        (["--jwt-role", "ml=viewer:a/b"], "invalid deployment glob"),
        (["--jwt-issuer", ""], "needs --jwt-issuer and --jwt-audience"),
    ],
)
def test_serve_refuses_an_unsafe_sso_configuration_before_it_starts(
    store_url: str, home: Path, options: list[str], message: str
) -> None:
    keys = jwts.write_jwks(home / "jwks.json", jwts.default_keys())
    cli = Cli({**server_env(store_url, home), "COLUMNS": "200"})
    done = cli("serve", "--port", "0", *jwts.sso_args(keys), *options, code=5)
    assert message in done.stderr
