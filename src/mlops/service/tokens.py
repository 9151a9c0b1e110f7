"""API tokens: create one (its secret shown once), list, revoke, and authenticate a secret."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from mlops.core.access import (
    ROLES,
    SCOPES,
    Identity,
    Role,
    Scope,
    check_glob,
    key_id_of,
    make_secret,
    same_hash,
    secret_hash,
)
from mlops.core.limits import LIST_MAX, TOKEN_LIFETIME_MAX_S
from mlops.core.refs import check_name
from mlops.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from mlops.records import Actor, CreatedToken, TokenInfo
from mlops.service.authn import Attempt, actor_of
from mlops.service.base import ServiceBase, check_reason, record_manual
from mlops.store.tokens import TokenRow

_NO_SUCH = "invalid token"
_DUMMY_HASH = secret_hash(make_secret("0" * 12, "A" * 43))
"""Compared against when no token has the presented key id, so both paths cost the same."""


def status_of(row: TokenRow, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def token_info(row: TokenRow, now: datetime) -> TokenInfo:
    return TokenInfo(
        name=row.name,
        key_id=row.key_id,
        role=row.role,
        deployments=row.deployments,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
        status=status_of(row, now),
    )


def identity_of(row: TokenRow, now: datetime) -> Identity:
    """Who an active token stands for; Unauthenticated when it expired or was revoked."""
    state = status_of(row, now)
    if state != "active":
        raise Unauthenticated(f"token {row.name!r} is {state}")
    return Identity(
        name=row.name,
        role=cast(Role | None, row.role),
        deployments=row.deployments,
        scopes=frozenset(cast(Scope, s) for s in row.scopes),
        token_id=row.id,
    )


def _checked(role: str | None, scopes: Sequence[str], deployments: str) -> tuple[str, ...]:
    if role is not None and role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    if role is None and not scopes:
        raise InvalidInput("a token needs a role (--role), a scope (--scope), or both")
    try:
        check_glob(deployments)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return tuple(sorted(set(scopes)))


class TokenOps(ServiceBase):
    def create_token(
        self,
        name: str,
        *,
        role: str | None,
        deployments: str = "*",
        scopes: Sequence[str] = (),
        expires_in_s: float | None = None,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> CreatedToken:
        """A new token; its secret is in the answer only. Only an active token's name is
        taken: a revoked or expired one's may be given again."""
        check_name(name, "token name")
        check_reason(reason)
        kept = _checked(role, scopes, deployments)
        if expires_in_s is not None and not 0 < expires_in_s <= TOKEN_LIFETIME_MAX_S:
            raise InvalidInput("--expires must be more than 0 and at most 366 days")
        now = self.clock()
        who = self._actor(actor)
        key_id = secrets.token_hex(6)
        secret = make_secret(key_id, secrets.token_urlsafe(32))
        expires_at = now + timedelta(seconds=expires_in_s) if expires_in_s else None
        with self.store.write() as tx:
            if any(status_of(r, now) == "active" for r in tx.tokens_named(name)):
                raise Conflict(f"an active token is named {name!r}: revoke it first")
            tx.insert_token(
                key_id=key_id,
                name=name,
                role=role,
                deployments=deployments,
                scopes=list(kept),
                secret_hash=secret_hash(secret),
                created_at=now,
                created_by=who.name,
                expires_at=expires_at,
            )
            record_manual(
                tx,
                who,
                "token_create",
                at=now,
                reason=reason,
                details={
                    "token": name,
                    "key_id": key_id,
                    "role": role,
                    "deployments": deployments,
                    "scopes": list(kept),
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
            )
            row = tx.token_by_key(key_id)
        assert row is not None
        return CreatedToken(token_info(row, now), secret)

    def tokens(self, *, limit: int = LIST_MAX) -> list[TokenInfo]:
        now = self.clock()
        with self.store.read() as tx:
            return [token_info(r, now) for r in tx.token_list(limit=limit)]

    def revoke_token(
        self, name: str, *, reason: str | None = None, actor: Actor | str | None = None
    ) -> TokenInfo:
        """Revoke the active token of that name; every worker stops accepting it."""
        check_name(name, "token name")
        check_reason(reason)
        now = self.clock()
        who = self._actor(actor)
        with self.store.write() as tx:
            active = [r for r in tx.tokens_named(name) if status_of(r, now) == "active"]
            if not active:
                raise NotFound(f"no active token is named {name!r}")
            row = active[-1]
            tx.revoke_token(row.id, at=now, by=who.name)
            record_manual(
                tx,
                who,
                "token_revoke",
                at=now,
                reason=reason,
                details={"token": name, "key_id": row.key_id},
            )
            revoked = tx.token_by_key(row.key_id)
        assert revoked is not None
        return token_info(revoked, now)

    def authenticate(self, secret: str) -> Identity:
        """The identity a presented secret stands for; Unauthenticated for a malformed,
        unknown, expired or revoked one. The hash is compared in constant time."""
        key_id = key_id_of(secret)
        if key_id is None:
            raise Unauthenticated("malformed token: expected mlops_<12 hex>_<43 characters>")
        presented = secret_hash(secret)
        with self.store.read() as tx:
            row = tx.token_by_key(key_id)
        if not same_hash(presented, row.secret_hash if row is not None else _DUMMY_HASH):
            raise Unauthenticated(_NO_SUCH)
        assert row is not None
        return identity_of(row, self.clock())

    def record_denial(self, who: Identity | None, attempt: Attempt, reason: str) -> None:
        """Keep a refused request in the audit history (the deployment's, when it exists)."""
        with self.store.write() as tx:
            dep = tx.deployment(attempt.deployment) if attempt.deployment else None
            record_manual(
                tx,
                actor_of(who) if who else Actor("anonymous", "anonymous"),
                "access_denied",
                at=self.clock(),
                reason=reason,
                details={"method": attempt.method, "path": attempt.path, "client": attempt.client},
                deployment_id=dep.id if dep else None,
            )
