"""Dashboard sessions: a browser's sign-in, kept by the hash of its secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from mlops.store import schema as t
from mlops.store.transaction import Transaction


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    secret_hash: str
    csrf: str
    token_id: int | None
    identity: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None


class SessionRepo(Transaction):
    def insert_session(
        self,
        *,
        secret_hash: str,
        csrf: str,
        token_id: int | None,
        identity: dict[str, Any],
        created_at: datetime,
        expires_at: datetime,
    ) -> int:
        stmt = (
            insert(t.web_sessions)
            .values(
                secret_hash=secret_hash,
                csrf=csrf,
                token_id=token_id,
                identity=identity,
                created_at=created_at,
                expires_at=expires_at,
            )
            .returning(t.web_sessions.c.id)
        )
        return int(self.conn.execute(stmt).scalar_one())

    def session_by_hash(self, secret_hash: str) -> SessionRow | None:
        s = t.web_sessions
        found = self.conn.execute(select(s).where(s.c.secret_hash == secret_hash)).first()
        return SessionRow(**found._mapping) if found is not None else None

    def end_session(self, session_id: int, at: datetime) -> None:
        s = t.web_sessions
        self.conn.execute(
            update(s).where(s.c.id == session_id, s.c.ended_at.is_(None)).values(ended_at=at)
        )

    def prune_sessions(self, *, before: datetime) -> None:
        """Forget sessions that expired before `before`."""
        s = t.web_sessions
        self.conn.execute(delete(s).where(s.c.expires_at < before))
