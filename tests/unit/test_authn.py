"""The worker's token check: a short cache that never makes a request wait for the store once
a token is known, a revocation that stops within twice the cache's life, one reading of the
store at a time per token, and a limit on failed attempts per address."""

from __future__ import annotations

import threading

import pytest

from mlops.core.access import Grant, Identity, make_secret
from mlops.errors import Forbidden, TooManyAttempts, Unauthenticated
from mlops.service.authn import Attempt, Authenticator
from tests.server import wait_for

SECRET = make_secret("0123456789ab", "A" * 43)
WHO = Identity("ci", "viewer")


class Store:
    """Stands in for `Service.authenticate` and `record_denial`."""

    def __init__(self) -> None:
        self.revoked = False
        self.reads = 0
        self.denials: list[str] = []

    def authenticate(self, secret: str) -> Identity:
        self.reads += 1
        if self.revoked or secret != SECRET:
            raise Unauthenticated("invalid token")
        return WHO

    def record(self, who: Identity | None, attempt: Attempt, why: str) -> None:
        self.denials.append(why)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Authenticator, Store, Clock]:
    store, clock = Store(), Clock()
    return Authenticator(store.authenticate, store.record, ttl_s=0.4, clock=clock), store, clock


def attempt() -> Attempt:
    return Attempt("GET", "/api/v1/models", "10.0.0.1")


def test_a_known_token_is_served_from_the_cache_and_read_again_behind_the_requests() -> None:
    auth, store, clock = make()
    assert auth.authorize(SECRET, "read", attempt()) == WHO
    assert auth.allowed_cached(SECRET, "read", None) == WHO
    assert store.reads == 1
    clock.now += 0.5  # stale, not twice stale: let through, read again in the background
    assert auth.allowed_cached(SECRET, "read", None) == WHO
    wait_for(lambda: store.reads == 2)
    assert auth.allowed_cached(SECRET, "read", None) == WHO  # fresh again


def test_a_revoked_token_stops_within_twice_the_cache_life() -> None:
    auth, store, clock = make()
    auth.authorize(SECRET, "read", attempt())
    store.revoked = True
    clock.now += 0.5
    assert auth.allowed_cached(SECRET, "read", None) == WHO  # the last time
    wait_for(lambda: auth.allowed_cached(SECRET, "read", None) is None)
    with pytest.raises(Unauthenticated):
        auth.authorize(SECRET, "read", attempt())
    clock.now += 10
    assert auth.allowed_cached(SECRET, "read", None) is None


def test_a_token_twice_stale_is_read_again_before_it_is_trusted() -> None:
    auth, store, clock = make()
    auth.authorize(SECRET, "read", attempt())
    clock.now += 0.81
    assert auth.allowed_cached(SECRET, "read", None) is None
    assert auth.authorize(SECRET, "read", attempt()) == WHO
    assert store.reads == 2


def test_requests_that_miss_together_read_the_store_once() -> None:
    auth, store, _ = make()
    start = threading.Barrier(8)

    def one() -> None:
        start.wait()
        auth.authorize(SECRET, "read", attempt())

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.reads == 1


def test_refusals_are_recorded_and_failures_limited_per_address() -> None:
    auth, store, _ = make()
    with pytest.raises(Forbidden):
        auth.authorize(SECRET, "operate", attempt())
    assert store.denials == ["token 'ci' has role viewer; this needs operator"]
    for _ in range(20):
        with pytest.raises(Unauthenticated):
            auth.authorize("mlops_wrong", "read", attempt())
    with pytest.raises(TooManyAttempts) as refused:
        auth.authorize(SECRET, "read", attempt())
    assert refused.value.retry_after > 0
    assert auth.authorize(SECRET, "read", Attempt("GET", "/", "10.0.0.2")) == WHO


def test_a_jwt_leaves_the_cache_when_it_expires_whatever_the_cache_life() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2ln"
    wall = Clock()
    ana = Identity("ana", None, kind="jwt", grants=(Grant(role="viewer"),), until=wall.now + 0.3)
    store, clock = Store(), Clock()

    def verify(secret: str) -> Identity:
        store.reads += 1
        if ana.until is not None and wall.now >= ana.until:
            raise Unauthenticated("the JWT has expired")
        return ana

    auth = Authenticator(verify, store.record, ttl_s=0.4, clock=clock, wall=wall)
    assert auth.authorize(token, "read", attempt()) == ana
    assert auth.allowed_cached(token, "read", None) == ana
    wall.now += 0.3  # its exp: the cache, still fresh, no longer answers for it
    assert auth.allowed_cached(token, "read", None) is None
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authorize(token, "read", attempt())
    assert store.reads == 2
    assert store.denials == ["the JWT has expired"]
