"""What the dashboard keeps in the store: sessions, and each rollout's analysis trajectory."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mlops import Client
from mlops.core.access import Grant, Identity, secret_hash
from mlops.errors import Unauthenticated
from mlops.service.base import utcnow
from mlops.service.sessions import SESSION_S
from mlops.store.rollouts import ANALYSIS_POINTS_MAX


def test_a_session_follows_its_token_and_ends_when_signed_out(client: Client) -> None:
    service = client._service
    made = service.create_token("ops", role="operator", deployments="api*")
    who = service.authenticate(made.secret)
    secret, session = service.start_session(who)
    assert secret != made.secret
    found = service.session(secret)
    assert (found.identity.label(), found.identity.role, found.csrf) == (
        "token:ops",
        "operator",
        session.csrf,
    )
    service.end_session(found.id)
    with pytest.raises(Unauthenticated):
        service.session(secret)
    # Sessions long expired are forgotten when someone signs in.
    store = service.store
    with store.read() as tx:
        assert tx.session_by_hash(secret_hash(secret)) is not None
    later = utcnow() + timedelta(seconds=3 * SESSION_S)
    service.clock = lambda: later
    service.start_session(who)
    with store.read() as tx:
        assert tx.session_by_hash(secret_hash(secret)) is None
    service.clock = utcnow
    again, _ = service.start_session(who)
    service.revoke_token("ops")
    with pytest.raises(Unauthenticated):
        service.session(again)
    for wrong in ("", "x" * 65, "é", secret + "x"):
        with pytest.raises(Unauthenticated):
            service.session(wrong)


def test_a_jwt_session_keeps_its_grants_until_the_jwt_expires(client: Client) -> None:
    service = client._service
    soon = (utcnow() + timedelta(seconds=60)).timestamp()
    who = Identity(
        "ana@corp",
        None,
        kind="jwt",
        grants=(Grant("operator", frozenset(), "api"), Grant("viewer")),
        until=soon,
    )
    secret, session = service.start_session(who)
    assert session.expires_at.timestamp() == pytest.approx(soon, abs=1)
    assert service.session(secret).identity == who
    expired = Identity("old@corp", None, kind="jwt", grants=(Grant("viewer"),), until=1.0)
    gone, _ = service.start_session(expired)
    with pytest.raises(Unauthenticated):
        service.session(gone)


def test_a_long_rollout_keeps_a_thinned_trajectory_with_its_first_and_latest_points(
    client: Client, model_files: dict[str, Path]
) -> None:
    client.register("m", model_files["skops"])
    client.register("m", model_files["onnx"])
    client.deploy("api", model="m:1")
    client.deploy("api", model="m:2", strategy="canary")
    store = client._service.store
    with store.write() as tx:
        dep = tx.deployment("api")
        assert dep is not None
        rollout = tx.active_rollout(dep)
        assert rollout is not None
        for i in range(ANALYSIS_POINTS_MAX + 50):
            tx.add_analysis_point(rollout.id, utcnow(), {"i": i})
    story = client._service.rollout_story("api")
    assert story is not None
    seen = [p["i"] for _, p in story.points]
    assert len(seen) <= ANALYSIS_POINTS_MAX
    assert seen[0] == 0
    assert seen[-1] == ANALYSIS_POINTS_MAX + 49
    assert seen == sorted(seen)
