"""Single sign-on: what `mlops serve --jwt-*` may be set to, what a bearer JWT of the company's
identity provider must look like, which key of its JWKS may verify it, and who its claims
stand for. Pure: `service/sso.py` fetches the keys and checks signatures and times.

A caller's groups (the `--jwt-claim` claim: a string or a list of strings) map to grants with
`--jwt-role GROUP=RIGHT[:GLOB]`, RIGHT a role (viewer, operator, admin) or a scope (feedback,
predict): on a deployment the caller may do what the highest role among the grants covering
it allows. A caller whose groups map to nothing is authenticated and may do nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mlops.core.access import ROLES, SCOPES, Grant, Identity, check_glob
from mlops.core.refs import is_printable
from mlops.errors import Unauthenticated

JWT_MAX = 8 * 1024
"""The longest bearer value taken; longer ones are refused before they are parsed."""
LEEWAY_S = 30.0
"""How far the clocks of the identity provider and this server may disagree: a JWT is taken
up to this long after its `exp`, and this long before its `nbf` or `iat`."""
NAME_MAX = 128
DEFAULT_ALGORITHMS = ("RS256", "ES256")

_KEYS: dict[str, tuple[str, frozenset[str]]] = {
    **{f"{kind}{bits}": ("RSA", frozenset()) for kind in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
"""The public-key algorithms a JWT may be signed with, and the key type (and curves) each
needs: a key verifies only the algorithms of its own type."""

_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class GroupGrant:
    group: str
    grant: Grant


@dataclass(frozen=True)
class SsoSettings:
    """The checked `--jwt-*` options of `mlops serve`."""

    jwks: str
    """A JWKS file, or its https URL (http only to a loopback host)."""
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    groups_claim: str
    name_claim: str
    grants: tuple[GroupGrant, ...]

    @property
    def jwks_url(self) -> str | None:
        return self.jwks if urlsplit(self.jwks).scheme else None


def is_jwt(bearer: str) -> bool:
    """Whether a bearer value has a JWT's shape: three base64url parts (the last, the
    signature, may be empty, as in an unsigned one: refused later, with the reason)."""
    return len(bearer) <= JWT_MAX and _JWT.fullmatch(bearer) is not None


def sso_settings(
    *,
    jwks: str | None,
    issuer: str | None,
    audience: str | None,
    algorithms: Sequence[str],
    groups_claim: str,
    name_claim: str,
    roles: Sequence[str],
) -> SsoSettings | None:
    """The SSO settings, checked; None without a JWKS. ValueError says what is wrong."""
    if not jwks:
        if issuer or audience or roles:
            raise ValueError("--jwt-issuer, --jwt-audience and --jwt-role need --jwt-jwks")
        return None
    if not issuer or not audience:
        raise ValueError("--jwt-jwks needs --jwt-issuer and --jwt-audience")
    if not groups_claim or not name_claim:
        raise ValueError("--jwt-claim and --jwt-name-claim must name a claim")
    check_jwks_location(jwks)
    return SsoSettings(
        jwks=jwks,
        issuer=issuer,
        audience=audience,
        algorithms=parse_algorithms(algorithms),
        groups_claim=groups_claim,
        name_claim=name_claim,
        grants=tuple(parse_grant(spec) for spec in roles),
    )


def check_jwks_location(location: str) -> str:
    """A JWKS file path, or an https URL, or an http URL to a loopback host."""
    parts = urlsplit(location)
    if not parts.scheme:
        return location
    if parts.scheme not in ("https", "http"):
        raise ValueError("--jwt-jwks: a file, or an https:// URL (http:// only to a loopback host)")
    if not parts.hostname:
        raise ValueError("--jwt-jwks: the URL names no host")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValueError("--jwt-jwks: plain http:// is taken only to a loopback host; use https")
    return location


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_algorithms(names: Sequence[str]) -> tuple[str, ...]:
    """The allowed algorithms (`RS256,ES256`, or one per item): public-key ones only."""
    out: list[str] = []
    for name in (part.strip() for item in names for part in item.split(",")):
        if not name:
            continue
        if name.lower() == "none":
            raise ValueError("--jwt-algorithms: unsigned JWTs ('none') are never accepted")
        if name.upper().startswith("HS"):
            raise ValueError(
                f"--jwt-algorithms: {name} is refused: an HMAC algorithm takes a shared secret, "
                "and the public keys of a JWKS must never verify one (key confusion)"
            )
        if name not in _KEYS:
            raise ValueError(f"--jwt-algorithms: unknown {name!r}; known: {', '.join(_KEYS)}")
        out.append(name)
    if not out:
        raise ValueError("--jwt-algorithms: name at least one algorithm")
    return tuple(dict.fromkeys(out))


def parse_grant(spec: str) -> GroupGrant:
    """`GROUP=RIGHT[:GLOB]`: the group's members get the role or scope RIGHT on GLOB (`*`)."""
    group, eq, rest = spec.rpartition("=")
    right, colon, glob = rest.partition(":")
    if not eq or not group.strip():
        raise ValueError(f"--jwt-role {spec!r}: expected GROUP=ROLE[:GLOB]")
    try:
        glob = check_glob(glob) if colon else "*"
    except ValueError as exc:
        raise ValueError(f"--jwt-role {spec!r}: {exc}") from None
    if right in ROLES:
        return GroupGrant(group, Grant(role=right, deployments=glob))
    if right in SCOPES:
        return GroupGrant(group, Grant(scopes=frozenset({right}), deployments=glob))
    known = ", ".join((*ROLES, *SCOPES))
    raise ValueError(f"--jwt-role {spec!r}: unknown role or scope {right!r}; known: {known}")


def jwks_keys(document: object) -> dict[str, dict[str, Any]]:
    """The signing keys of a JWKS document by key id: public keys (RSA, EC, OKP) with a `kid`
    and no other `use` than `sig`; a shared secret (`oct`) is never one. ValueError for a
    document that is not a JWKS or holds none."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError('not a JWKS: expected {"keys": [...]}')
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        if (
            isinstance(key, dict)
            and isinstance(key.get("kid"), str)
            and key.get("use", "sig") == "sig"
            and key.get("kty") in ("RSA", "EC", "OKP")
        ):
            out.setdefault(key["kid"], key)
    if not out:
        raise ValueError("the JWKS holds no public signing key with a key id (kid)")
    return out


def key_fits(algorithm: str, key: Mapping[str, Any]) -> bool:
    """Whether `key` may verify a signature of `algorithm`: the key's type (and curve) is the
    algorithm's, and the key names no other algorithm. So an RSA key never verifies an HMAC
    or an EC signature, whatever the JWT's header claims."""
    kty, curves = _KEYS.get(algorithm, ("", frozenset()))
    if key.get("kty") != kty or key.get("alg", algorithm) != algorithm:
        return False
    return not curves or key.get("crv") in curves


def groups_of(claims: Mapping[str, Any], claim: str) -> tuple[str, ...]:
    """The caller's groups: the claim's string, or its list of strings; none without it."""
    value = claims.get(claim)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise Unauthenticated(f"the JWT's {claim!r} claim is neither a string nor a list of strings")


def identity_of(claims: Mapping[str, Any], settings: SsoSettings) -> Identity:
    """Who verified claims stand for: `jwt:<name claim>`, with the grants of its groups."""
    name = claims.get(settings.name_claim)
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > NAME_MAX
        or not is_printable(name)
    ):
        raise Unauthenticated(
            f"the JWT's {settings.name_claim!r} claim is not a name "
            f"(1-{NAME_MAX} printable characters)"
        )
    groups = set(groups_of(claims, settings.groups_claim))
    grants = tuple(dict.fromkeys(g.grant for g in settings.grants if g.group in groups))
    expires = claims.get("exp")
    until = float(expires) if isinstance(expires, int | float) else None
    return Identity(name, None, kind="jwt", grants=grants, until=until)
