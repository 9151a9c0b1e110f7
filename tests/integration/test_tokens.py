"""API tokens on a real store: created with a secret shown once and only its hash kept,
listed, revoked and expired; a presented secret authenticates to its identity or is refused."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mlops import Client, Conflict, InvalidInput, NotFound, Unauthenticated
from mlops.core.access import Identity
from mlops.service import Service
from mlops.settings import load_settings
from tests.server import Cli


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def service(store_url: str, home: Path) -> Service:
    clock = Clock()
    svc = Service(load_settings(home=home, store_url=store_url), clock=clock)
    svc.clock_ = clock  # type: ignore[attr-defined]
    return svc


def test_a_secret_authenticates_to_its_token_and_only_its_hash_is_kept(
    service: Service, store_url: str
) -> None:
    created = service.create_token(
        "ci", role="operator", deployments="fraud-*", scopes=["feedback"]
    )
    assert created.secret.startswith(f"mlops_{created.token.key_id}_")
    assert service.authenticate(created.secret) == Identity(
        "ci",
        "operator",
        deployments="fraud-*",
        scopes=frozenset({"feedback"}),
        token_id=1,
    )
    engine = create_engine(store_url)
    with engine.connect() as conn:
        rows = [str(tuple(r)) for r in conn.execute(text("SELECT * FROM tokens"))]
        events = [str(tuple(r)) for r in conn.execute(text("SELECT * FROM events"))]
    engine.dispose()
    assert len(rows) == 1
    random_part = created.secret[19:]
    assert all(random_part not in line for line in rows + events)
    service.close()


def test_a_wrong_malformed_revoked_or_expired_secret_is_refused(service: Service) -> None:
    created = service.create_token("ci", role="viewer", expires_in_s=3600)
    wrong = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    with pytest.raises(Unauthenticated, match="invalid token"):
        service.authenticate(wrong)
    unknown = f"mlops_{'f' * 12}_{created.secret[19:]}"
    with pytest.raises(Unauthenticated, match="invalid token"):
        service.authenticate(unknown)
    with pytest.raises(Unauthenticated, match="malformed"):
        service.authenticate("Bearer " + created.secret)
    service.clock_.now += timedelta(hours=1)  # type: ignore[attr-defined]
    with pytest.raises(Unauthenticated, match="'ci' is expired"):
        service.authenticate(created.secret)
    again = service.create_token("ci", role="viewer")  # an expired token's name is free
    assert service.authenticate(again.secret).name == "ci"
    service.revoke_token("ci", reason="left the team")
    with pytest.raises(Unauthenticated, match="'ci' is revoked"):
        service.authenticate(again.secret)
    assert [(t.name, t.status) for t in service.tokens()] == [
        ("ci", "expired"),
        ("ci", "revoked"),
    ]
    service.close()


def test_creating_and_revoking_are_events_and_checked(service: Service) -> None:
    service.create_token("ci", role="admin", reason="bootstrap")
    with pytest.raises(Conflict, match="active token is named 'ci'"):
        service.create_token("ci", role="viewer")
    with pytest.raises(InvalidInput, match="needs a role"):
        service.create_token("x", role=None)
    with pytest.raises(InvalidInput, match="unknown scope 'write'"):
        service.create_token("x", role=None, scopes=["write"])
    with pytest.raises(InvalidInput, match="deployment glob"):
        service.create_token("x", role="viewer", deployments="../etc")
    with pytest.raises(InvalidInput):
        service.create_token("../x", role="viewer")
    with pytest.raises(InvalidInput, match="--expires"):
        service.create_token("x", role="viewer", expires_in_s=0)
    with pytest.raises(NotFound, match="no active token is named 'nobody'"):
        service.revoke_token("nobody")
    service.revoke_token("ci")
    events = service.events(limit=10)
    assert [(e.action, e.details["token"]) for e in events] == [
        ("token_revoke", "ci"),
        ("token_create", "ci"),
    ]
    assert events[1].reason == "bootstrap"
    assert events[1].details["role"] == "admin"
    service.close()


def test_the_token_commands(store_url: str, home: Path, client: Client) -> None:
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_STORE": store_url, "COLUMNS": "200"}
    cli = Cli(env)
    made = cli.json("token", "create", "deployer", "--role", "operator", "--expires", "30d")
    assert isinstance(made, dict)
    secret = made["secret"]
    assert made["token"]["role"] == "operator"
    assert client._service.authenticate(secret).role == "operator"
    listed = cli("token", "list").stdout
    assert "deployer" in listed
    assert secret[19:] not in listed
    refused = cli("token", "create", "x", "--role", "admin", "--expires", "400d", code=5)
    assert "invalid --expires" in refused.stderr
    cli("token", "revoke", "deployer", "--reason", "rotated")
    with pytest.raises(Unauthenticated):
        client._service.authenticate(secret)
