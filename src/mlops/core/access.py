"""Who may do what: roles, data-plane scopes, a token's deployment glob, and the decision.

A token carries at most one role and any data-plane scopes:

    viewer     reads everything its glob covers
    operator   a viewer that also deploys, steers rollouts, rolls back, splits traffic and
               registers code-free flavors, on the deployments its glob covers
    admin      an operator that may also run code on the servers (--trust registrations,
               Python-callable migrations, data resources naming server-side paths),
               manage tokens, lift quarantines and --force
    feedback   may post delayed labels to the deployments its glob covers
    predict    may call predictions when the gateway requires tokens for them

A caller signed in through the company's identity provider (a JWT, `core/sso.py`) holds
instead one grant per right its groups map to, each on its own glob: on a deployment it may
do what the highest role among the grants covering it allows.

The secret's shape and its hash are here too: pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
Scope = Literal["feedback", "predict"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SCOPES: tuple[Scope, ...] = ("feedback", "predict")

Need = Literal["read", "operate", "run_code", "admin", "feedback", "predict"]
"""What an operation asks of its caller."""

_RANK: dict[Role, int] = {"viewer": 1, "operator": 2, "admin": 3}
_ROLE_FOR: dict[Need, Role] = {
    "read": "viewer",
    "operate": "operator",
    "run_code": "admin",
    "admin": "admin",
}

GLOB_PATTERN = re.compile(r"[A-Za-z0-9._*?\[\]!-]{1,128}")
GLOB_RULE = "1-128 characters: letters, digits, '.', '_', '-' and the wildcards * ? [ ] !"

EVERY = "*"
"""Stands for every deployment: what a model-wide change (a quarantine) acts on. Only a token
whose glob covers every name (`*`) covers it."""

TOKEN_PREFIX = "mlops_"
_TOKEN = re.compile(r"mlops_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
TOKEN_MAX = 128
"""Longer presented secrets are refused before they are hashed."""


@dataclass(frozen=True)
class Grant:
    """What a token of this role, scopes and glob could do: one right of an SSO caller."""

    role: Role | None = None
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    deployments: str = "*"


@dataclass(frozen=True)
class Identity:
    """Who a request comes from: an API token (its name, role, glob and scopes), or a caller
    of the identity provider (`kind` jwt: its subject, no role of its own, and the grants its
    groups map to)."""

    name: str
    role: Role | None
    deployments: str = "*"
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    token_id: int | None = None
    kind: Literal["token", "jwt"] = "token"
    grants: tuple[Grant, ...] = ()
    until: float | None = None
    """When the credential stops being valid, in seconds since the epoch (a JWT's `exp`);
    None for a token, whose state the store keeps."""

    def covers(self, deployment: str) -> bool:
        """Whether one of its roles covers `deployment`: what it may see there."""
        if self.role is not None and _matches(self.deployments, deployment):
            return True
        return any(g.role is not None and _matches(g.deployments, deployment) for g in self.grants)

    def label(self) -> str:
        """How events name it: `token:NAME`, or `jwt:SUBJECT`."""
        return f"{self.kind}:{self.name}"


def refusal(identity: Identity, need: Need, deployment: str | None = None) -> str | None:
    """Why `identity` may not do what needs `need` (on `deployment`), or None if it may: its
    own role, scopes and glob allow it, or one of its grants does."""
    if _allows(identity.role, identity.scopes, identity.deployments, need, deployment):
        return None
    if any(_allows(g.role, g.scopes, g.deployments, need, deployment) for g in identity.grants):
        return None
    return _why_not(identity, need)


def _allows(
    role: Role | None, scopes: frozenset[Scope], glob: str, need: Need, deployment: str | None
) -> bool:
    if need == "feedback" or need == "predict":
        if need not in scopes:
            return False
    elif role is None or _RANK[role] < _RANK[_ROLE_FOR[need]]:
        return False
    return deployment is None or _matches(glob, deployment)


def _matches(glob: str, deployment: str) -> bool:
    return glob == "*" or fnmatchcase(deployment, glob)


def _why_not(identity: Identity, need: Need) -> str:
    who = f"{identity.kind} {identity.name!r}"
    own = Grant(identity.role, identity.scopes, identity.deployments)
    rights = (own, *identity.grants)
    if need == "feedback" or need == "predict":
        able = [g.deployments for g in rights if need in g.scopes]
        if not able:
            return f"{who} lacks the {need!r} scope"
    else:
        wanted = _ROLE_FOR[need]
        roles = [g.role for g in rights if g.role is not None]
        able = [g.deployments for g in rights if g.role and _RANK[g.role] >= _RANK[wanted]]
        if not able:
            has = f"role {max(roles, key=_RANK.__getitem__)}" if roles else "no role"
            return f"{who} has {has}; this needs {wanted}"
    globs = ", ".join(repr(glob) for glob in dict.fromkeys(able))
    return f"{who} is scoped to deployments {globs}"


def check_glob(glob: str) -> str:
    if not GLOB_PATTERN.fullmatch(glob):
        raise ValueError(f"invalid deployment glob: {GLOB_RULE}")
    return glob


def make_secret(key_id: str, random_part: str) -> str:
    """The secret a token's holder presents: `mlops_<key id>_<random>`."""
    secret = f"{TOKEN_PREFIX}{key_id}_{random_part}"
    if not _TOKEN.fullmatch(secret):
        raise ValueError("a token is mlops_, 12 hex digits, _ and 43 URL-safe characters")
    return secret


def key_id_of(secret: str) -> str | None:
    """The public key id of a well-formed secret; None for anything else."""
    if len(secret) > TOKEN_MAX:
        return None
    found = _TOKEN.fullmatch(secret)
    return found.group(1) if found else None


def secret_hash(secret: str) -> str:
    """What the store keeps of a secret. The random part has 256 bits: a fast hash is enough."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Compare two hashes in constant time."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def parse_networks(specs: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Trusted proxies as networks (`10.0.0.0/8`, `127.0.0.1`); ValueError names a bad one."""
    out = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {spec!r}") from None
    return tuple(out)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str:
    """The address a request comes from: its peer's, or, when the peer is a trusted proxy, the
    nearest address in `X-Forwarded-For` that is not one (a client may write any addresses
    at the left of the header; only those the trusted proxies appended count)."""
    address = peer or "unknown"
    if not forwarded_for or not _trusted(address, trusted):
        return address
    for hop in reversed(forwarded_for.split(",")[-32:]):
        hop = hop.strip()
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # a hop that is not an address: trust none beyond the peer
        address = hop
        if not _trusted(hop, trusted):
            return hop
    return address


def _trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)
