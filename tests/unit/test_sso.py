"""Single sign-on without a server: the options checked, a JWT's claims mapped to grants (the
highest role covering a deployment decides), a key fitting only its own algorithms, the
verifier's refusals, and bearer values routed by shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlops.core.access import Grant, Identity, make_secret, refusal
from mlops.core.sso import (
    JWT_MAX,
    SsoSettings,
    groups_of,
    identity_of,
    jwks_keys,
    key_fits,
    parse_algorithms,
    parse_grant,
    sso_settings,
)
from mlops.errors import InvalidInput, Unauthenticated
from mlops.gateway.config import GatewayConfig
from mlops.service.sso import NOT_HERE, FileKeys, JwtVerifier, bearer_check
from tests import jwts
from tests.jwts import Claims


def settings(*roles: str, jwks: str = "keys.json") -> SsoSettings:
    made = sso_settings(
        jwks=jwks,
        issuer=jwts.ISSUER,
        audience=jwts.AUDIENCE,
        algorithms=["RS256,ES256"],
        groups_claim="groups",
        name_claim="sub",
        roles=roles or jwts.ROLES,
    )
    assert made is not None
    return made


def who(groups: Any, *roles: str) -> Identity:
    claims: dict[str, Any] = {"sub": "ana@corp", "exp": 2_000_000_000}
    if groups is not None:
        claims["groups"] = groups
    return identity_of(claims, settings(*roles))


def test_the_highest_role_that_covers_a_deployment_decides() -> None:
    ana = who(["ml-viewers", "ml-ops", "unmapped"])
    assert ana.label() == "jwt:ana@corp"
    assert ana.until == 2_000_000_000
    assert refusal(ana, "read", "anything") is None
    assert refusal(ana, "operate", "api") is None
    assert refusal(ana, "operate", "other") == "jwt 'ana@corp' is scoped to deployments 'api'"
    assert refusal(ana, "admin") == "jwt 'ana@corp' has role operator; this needs admin"
    assert ana.covers("other")
    assert ana.covers("api")
    boss = who(["ml-ops", "ml-admins"])
    assert refusal(boss, "admin", "other") is None
    assert refusal(boss, "run_code") is None


def test_globs_and_scopes_are_granted_per_group() -> None:
    ops = who(["ml-ops", "ml-ops-other"])
    assert refusal(ops, "operate", "other") is None
    assert refusal(ops, "operate", "fraud") == (
        "jwt 'ana@corp' is scoped to deployments 'api', 'oth*'"
    )
    assert not ops.covers("fraud")
    caller = who("ml-predict")  # a single string is one group
    assert caller.grants == (Grant(scopes=frozenset({"predict"}), deployments="api"),)
    assert refusal(caller, "predict", "api") is None
    assert refusal(caller, "predict", "other") is not None
    assert refusal(caller, "feedback", "api") == "jwt 'ana@corp' lacks the 'feedback' scope"
    assert refusal(caller, "read", "api") == "jwt 'ana@corp' has no role; this needs viewer"
    assert not caller.covers("api")  # a scope shows nothing


def test_a_missing_groups_claim_authenticates_a_caller_who_may_do_nothing() -> None:
    nobody = who(None)
    assert nobody.grants == ()
    assert refusal(nobody, "read", "api") == "jwt 'ana@corp' has no role; this needs viewer"
    assert who([]).grants == ()


@pytest.mark.parametrize("groups", [7, {"ml-admins": True}, ["ml-admins", 1], [["ml-admins"]]])
def test_a_groups_claim_of_the_wrong_type_is_refused(groups: Any) -> None:
    with pytest.raises(Unauthenticated, match="'groups' claim is neither a string nor a list"):
        who(groups)


@pytest.mark.parametrize("name", [None, "", "  ", 42, "a" * 129, "ana\x1b[2J", "ana\u202e"])
def test_a_caller_needs_a_printable_name(name: Any) -> None:
    claims = {"groups": ["ml-admins"]} | ({} if name is None else {"sub": name})
    with pytest.raises(Unauthenticated, match="'sub' claim is not a name"):
        identity_of(claims, settings())


def test_groups_of_reads_a_string_or_a_list_of_strings() -> None:
    assert groups_of({"g": "a"}, "g") == ("a",)
    assert groups_of({"g": ["a", "b"]}, "g") == ("a", "b")
    assert groups_of({}, "g") == ()


def test_a_role_option_is_group_right_and_glob() -> None:
    assert parse_grant("ml=viewer").grant == Grant(role="viewer")
    assert parse_grant("CN=ml,OU=corp=operator:fraud-*").group == "CN=ml,OU=corp"
    assert parse_grant("ml-feedback=feedback:fraud-*").grant == Grant(
        scopes=frozenset({"feedback"}), deployments="fraud-*"
    )
    for bad, why in [
        ("viewer", "expected GROUP=ROLE"),
        ("=viewer", "expected GROUP=ROLE"),
        ("ml=root", "unknown role or scope 'root'"),
        ("ml=viewer:../x", "invalid deployment glob"),
        ("ml=viewer:", "invalid deployment glob"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_grant(bad)


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (["none"], "unsigned"),
        (["RS256,NONE"], "unsigned"),
        (["HS256"], "HS256 is refused"),
        (["RS256", "hs512"], "hs512 is refused"),
        (["RS257"], "unknown 'RS257'"),
        ([" , "], "at least one"),
    ],
)
def test_only_public_key_algorithms_are_allowed(names: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_algorithms(names)


def test_algorithms_are_a_comma_list() -> None:
    assert parse_algorithms(["RS256, ES256", "PS256", "RS256"]) == ("RS256", "ES256", "PS256")


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"jwt_jwks": None, "jwt_issuer": "x"}, "need --jwt-jwks"),
        ({"jwt_audience": None}, "needs --jwt-issuer and --jwt-audience"),
        ({"jwt_issuer": ""}, "needs --jwt-issuer and --jwt-audience"),
        ({"jwt_jwks": "http://idp.corp.test/keys"}, "only to a loopback host"),
        ({"jwt_jwks": "file:///etc/keys.json"}, "a file, or an https:// URL"),
        ({"jwt_jwks": "https:///keys"}, "names no host"),
        ({"jwt_algorithms": ["RS256,HS256"]}, "HS256 is refused"),
        ({"jwt_roles": ["ml=boss"]}, "unknown role or scope"),
        ({"jwt_jwks": "/nonexistent/keys.json"}, "cannot read the JWKS file"),
    ],
)
def test_a_bad_sso_configuration_cannot_be_made(
    options: dict[str, Any], why: str, tmp_path: Path
) -> None:
    good = {
        "jwt_jwks": str(jwts.write_jwks(tmp_path / "keys.json", jwts.default_keys())),
        "jwt_issuer": jwts.ISSUER,
        "jwt_audience": jwts.AUDIENCE,
    }
    assert GatewayConfig(**good).sso() is not None
    with pytest.raises(InvalidInput, match=why):
        GatewayConfig(**(good | options))


def test_loopback_http_and_https_urls_are_taken() -> None:
    for url in ("https://idp.corp.test/keys", "http://127.0.0.1:9/k", "http://[::1]/k"):
        config = GatewayConfig(jwt_jwks=url, jwt_issuer="i", jwt_audience="a")
        assert config.sso() is not None
    assert GatewayConfig().sso() is None


def test_a_key_verifies_only_the_algorithms_of_its_own_type() -> None:
    rsa = jwts.public_jwk("r", jwts.rsa_key())
    p256 = jwts.public_jwk("e", jwts.ec_key())
    assert key_fits("RS256", rsa)
    assert key_fits("PS256", rsa)
    assert not key_fits("HS256", rsa)
    assert not key_fits("ES256", rsa)
    assert key_fits("ES256", p256)
    assert not key_fits("ES384", p256)
    assert not key_fits("RS256", rsa | {"alg": "RS512"})
    assert not key_fits("none", rsa)


def test_a_jwks_keeps_only_public_signing_keys_with_a_kid() -> None:
    rsa = jwts.public_jwk("r", jwts.rsa_key())
    secret = {"kty": "oct", "k": "c2VjcmV0", "kid": "s"}
    encryption = rsa | {"kid": "enc", "use": "enc"}
    nameless = {k: v for k, v in rsa.items() if k != "kid"}
    assert list(jwks_keys({"keys": [rsa, secret, encryption, nameless, "x"]})) == ["r"]
    for bad in ({}, {"keys": {}}, [], {"keys": [secret]}):
        with pytest.raises(ValueError, match="JWKS"):
            jwks_keys(bad)


@pytest.fixture
def verifier(tmp_path: Path) -> JwtVerifier:
    path = jwts.write_jwks(tmp_path / "keys.json", jwts.default_keys())
    return JwtVerifier(settings(jwks=str(path)), FileKeys(str(path)))


def test_the_verifier_accepts_rs256_and_es256_and_maps_the_groups(verifier: JwtVerifier) -> None:
    rs = verifier.identify(jwts.mint(Claims(groups=["ml-admins"])))
    assert (rs.name, rs.kind, rs.grants) == ("ana@corp", "jwt", (Grant(role="admin"),))
    es = verifier.identify(jwts.mint(Claims(sub="bo@corp", groups="ml-viewers"), kid="ec-1"))
    assert (es.name, es.grants) == ("bo@corp", (Grant(role="viewer"),))


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda: jwts.mint(Claims(exp_in=-60)), "has expired"),
        (lambda: jwts.mint(Claims(nbf_in=120)), "not valid yet"),
        (lambda: jwts.mint(Claims(iat_in=120)), "not valid yet"),
        (lambda: jwts.mint(Claims(iss="https://evil.test")), "issuer"),
        (lambda: jwts.mint(Claims(aud="other")), "another audience"),
        (lambda: jwts.unsigned(), "algorithm is not accepted"),
        (lambda: jwts.key_confusion(), "algorithm is not accepted"),
        (lambda: jwts.mint(algorithm="PS256"), "algorithm is not accepted"),
        (
            lambda: jwts.mint(kid="ec-1", key=jwts.ec_key("p384", "P-384"), algorithm="ES384"),
            "algorithm is not accepted",
        ),
        (lambda: jwts.mint(kid="ec-1", key=jwts.rsa_key()), "does not fit its key"),
        (lambda: jwts.flipped(jwts.mint()), "signature does not verify"),
        (lambda: jwts.mint(kid="rsa-1", key=jwts.rsa_key("other")), "signature does not verify"),
        (lambda: jwts.mint(kid="nope"), "not among the identity provider's"),
        (lambda: "abc.def.ghi", "malformed JWT"),
    ],
)
def test_the_verifier_refuses_without_showing_the_token(
    verifier: JwtVerifier, token: Any, why: str
) -> None:
    bearer = token()
    with pytest.raises(Unauthenticated, match=why) as refused:
        verifier.identify(bearer)
    assert all(part not in refused.value.message for part in bearer.split(".") if part)


def test_a_jwt_within_the_leeway_is_still_taken(verifier: JwtVerifier) -> None:
    assert verifier.identify(jwts.mint(Claims(exp_in=-10, nbf_in=10))).name == "ana@corp"


def test_a_rotated_key_file_is_read_again_for_an_unknown_kid(tmp_path: Path) -> None:
    path = jwts.write_jwks(tmp_path / "keys.json", {"rsa-1": jwts.rsa_key()})
    keys = FileKeys(str(path))
    assert keys.key("rsa-2") is None
    jwts.write_jwks(path, {"rsa-1": jwts.rsa_key(), "rsa-2": jwts.rsa_key("rsa-2")})
    found = keys.key("rsa-2")
    assert found is not None
    assert found["kid"] == "rsa-2"


def test_bearer_values_are_routed_by_their_shape() -> None:
    seen: list[str] = []

    def tokens(secret: str) -> Identity:
        seen.append(secret)
        return Identity("ci", "viewer")

    secret = make_secret("0123456789ab", "A" * 43)
    route = bearer_check(tokens, None)
    assert route(secret).name == "ci"
    with pytest.raises(Unauthenticated, match="start mlops serve with --jwt-jwks"):
        route(jwts.mint())
    assert NOT_HERE.startswith("JWTs are not accepted here")
    with pytest.raises(Unauthenticated, match=f"longer than {JWT_MAX}"):
        route("a." * JWT_MAX)
    assert seen == [secret]  # neither the JWT nor the over-long value reached the store


def test_a_jwks_document_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": []})[:-3])
    with pytest.raises(InvalidInput, match="JWKS file"):
        GatewayConfig(jwt_jwks=str(path), jwt_issuer="i", jwt_audience="a")
