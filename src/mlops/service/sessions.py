"""Dashboard sessions: a browser signs in once with what the API takes (an API token, or the
company's JWT), and holds a session secret in a cookie. Only the secret's hash is kept. A
session signed in with a token ends when the token is revoked or expires; one signed in with
a JWT keeps the JWT's identity until the JWT's own expiry at the latest."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from mlops.core.access import Grant, Identity, Role, Scope, secret_hash
from mlops.errors import Unauthenticated
from mlops.service.base import ServiceBase
from mlops.service.tokens import identity_of

SESSION_S = 8 * 3600.0
"""How long a sign-in lasts at most."""
SECRET_MAX = 64
_SIGNED_OUT = "not signed in, or the session ended: sign in again"


@dataclass(frozen=True)
class WebSession:
    id: int
    identity: Identity
    csrf: str
    """The secret every change sent with this session must carry (a form field or header)."""
    expires_at: datetime


def _grant_dict(g: Grant) -> dict[str, Any]:
    return {"role": g.role, "scopes": sorted(g.scopes), "deployments": g.deployments}


def _grant(d: dict[str, Any]) -> Grant:
    return Grant(
        cast(Role | None, d["role"]),
        frozenset(cast(Scope, s) for s in d["scopes"]),
        d["deployments"],
    )


def identity_dict(who: Identity) -> dict[str, Any]:
    return {
        **_grant_dict(Grant(who.role, who.scopes, who.deployments)),
        "name": who.name,
        "kind": who.kind,
        "grants": [_grant_dict(g) for g in who.grants],
        "until": who.until,
    }


def identity_from(d: dict[str, Any]) -> Identity:
    own = _grant(d)
    return Identity(
        name=d["name"],
        role=own.role,
        deployments=own.deployments,
        scopes=own.scopes,
        kind=d["kind"],
        grants=tuple(_grant(g) for g in d["grants"]),
        until=d["until"],
    )


class SessionOps(ServiceBase):
    def start_session(
        self, identity: Identity, *, lifetime_s: float = SESSION_S
    ) -> tuple[str, WebSession]:
        """A new session for an authenticated identity: its secret (for the cookie, shown
        once) and the session."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        expires = now + timedelta(seconds=lifetime_s)
        if identity.until is not None:
            expires = min(expires, datetime.fromtimestamp(identity.until, UTC))
        with self.store.write() as tx:
            tx.prune_sessions(before=now - timedelta(seconds=SESSION_S))
            session_id = tx.insert_session(
                secret_hash=secret_hash(secret),
                csrf=csrf,
                token_id=identity.token_id,
                identity=identity_dict(identity),
                created_at=now,
                expires_at=expires,
            )
        return secret, WebSession(session_id, identity, csrf, expires)

    def session(self, secret: str) -> WebSession:
        """The live session a cookie's secret stands for, with who it is now; Unauthenticated
        when it never existed, ended, expired, or its token was revoked."""
        if not (0 < len(secret) <= SECRET_MAX and secret.isascii()):
            raise Unauthenticated(_SIGNED_OUT)
        with self.store.read() as tx:
            row = tx.session_by_hash(secret_hash(secret))
            token = tx.token_by_id(row.token_id) if row and row.token_id is not None else None
        now = self.clock()
        if row is None or row.ended_at is not None or row.expires_at <= now:
            raise Unauthenticated(_SIGNED_OUT)
        if row.token_id is not None:
            if token is None:
                raise Unauthenticated(_SIGNED_OUT)
            identity = identity_of(token, now)
        else:
            identity = identity_from(row.identity)
            if identity.until is not None and identity.until <= now.timestamp():
                raise Unauthenticated(_SIGNED_OUT)
        return WebSession(row.id, identity, row.csrf, row.expires_at)

    def end_session(self, session_id: int) -> None:
        with self.store.write() as tx:
            tx.end_session(session_id, self.clock())
