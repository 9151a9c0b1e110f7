"""API tokens: who may call the control API and the data plane. Only a secret's hash is kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from mlops.store import schema as t
from mlops.store.changes import ChangeRepo


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    key_id: str
    name: str
    role: str | None
    deployments: str
    scopes: list[str]
    secret_hash: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


def _to_token(row: Any) -> TokenRow:
    return TokenRow(**row._mapping)


class TokenRepo(ChangeRepo):
    def insert_token(
        self,
        *,
        key_id: str,
        name: str,
        role: str | None,
        deployments: str,
        scopes: list[str],
        secret_hash: str,
        created_at: datetime,
        created_by: str,
        expires_at: datetime | None,
    ) -> int:
        stmt = (
            insert(t.tokens)
            .values(
                key_id=key_id,
                name=name,
                role=role,
                deployments=deployments,
                scopes=scopes,
                secret_hash=secret_hash,
                created_at=created_at,
                created_by=created_by,
                expires_at=expires_at,
            )
            .returning(t.tokens.c.id)
        )
        return int(self.conn.execute(stmt).scalar_one())

    def token_by_key(self, key_id: str) -> TokenRow | None:
        found = self.conn.execute(select(t.tokens).where(t.tokens.c.key_id == key_id)).first()
        return _to_token(found) if found is not None else None

    def token_by_id(self, token_id: int) -> TokenRow | None:
        found = self.conn.execute(select(t.tokens).where(t.tokens.c.id == token_id)).first()
        return _to_token(found) if found is not None else None

    def tokens_named(self, name: str) -> list[TokenRow]:
        stmt = select(t.tokens).where(t.tokens.c.name == name).order_by(t.tokens.c.id)
        return [_to_token(r) for r in self.conn.execute(stmt)]

    def token_list(self, *, limit: int) -> list[TokenRow]:
        stmt = select(t.tokens).order_by(t.tokens.c.id).limit(limit)
        return [_to_token(r) for r in self.conn.execute(stmt)]

    def revoke_token(self, token_id: int, *, at: datetime, by: str) -> None:
        """Revoke a token; the change feed tells every worker to forget what it cached."""
        tok = t.tokens
        self.conn.execute(
            update(tok)
            .where(tok.c.id == token_id, tok.c.revoked_at.is_(None))
            .values(revoked_at=at, revoked_by=by)
        )
        self.bump_change_seq()
