"""Authentication and authorization as every HTTP face needs them (the control API, the
gateway's feedback and predictions): a presented secret to an identity, with a short cache (a
revoked token stops within `ttl_s` on every worker, a JWT at its `exp`), a limit on failed
attempts per client address, and each refusal recorded (who, what, when, from where) and
counted. The secret is an API token or a JWT: `service/sso.py` composes the check."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from mlops.core.access import Identity, Need, refusal, secret_hash
from mlops.core.ratelimit import TokenBucket
from mlops.core.sso import JWT_MAX
from mlops.errors import Forbidden, TooManyAttempts, Unauthenticated
from mlops.records import Actor

CACHE_TTL_S = 0.4
"""How long a worker trusts what it last read of a token. A request that finds the reading
older, but not twice as old, is let through on it while one thread reads the token again
(the hot path never waits for the store); so a revoked or expired token is accepted for at
most twice this after the change."""
FAILURES_PER_S = 1.0
FAILURE_BURST = 20.0
FLIGHT_LOCKS = 64
MAX_TRACKED = 10_000
"""Secrets cached and client addresses tracked per worker; the oldest are forgotten first."""


DENIED = Counter(
    "mlops_access_denied", "Requests refused for want of a token or a right", ["status"]
)


@dataclass(frozen=True)
class Attempt:
    """What a request asks and where it comes from, as a refusal records it."""

    method: str
    path: str
    client: str
    deployment: str | None = None


Recorder = Callable[[Identity | None, Attempt, str], None]
"""Keeps a refusal: who (None: no valid token), the attempt, and why."""


def actor_of(identity: Identity) -> Actor:
    """Who an authenticated request acts as, in the events it causes."""
    return Actor(identity.label(), identity.kind)


class Authenticator:
    def __init__(
        self,
        authenticate: Callable[[str], Identity],
        record: Recorder,
        *,
        ttl_s: float = CACHE_TTL_S,
        failures_per_s: float = FAILURES_PER_S,
        failure_burst: float = FAILURE_BURST,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._authenticate = authenticate
        self._record = record
        self._ttl_s = ttl_s
        self._rate, self._burst = failures_per_s, failure_burst
        self._clock, self._wall = clock, wall
        self._known: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        self._failures: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()
        self._flights = [threading.Lock() for _ in range(FLIGHT_LOCKS)]
        self._refreshing: set[str] = set()

    def allowed_cached(
        self, secret: str | None, need: Need, deployment: str | None
    ) -> Identity | None:
        """The identity of a secret checked within the last `ttl_s`, if it may do this: the
        fast path, with no store and no thread; None means "ask `authorize`", not "refused"."""
        known = self.cached(secret, stale_ok=True) if secret else None
        return known if known is not None and refusal(known, need, deployment) is None else None

    def authorize(self, secret: str | None, need: Need, attempt: Attempt) -> Identity:
        """The identity of `secret` if it may do what needs `need` on the attempt's deployment;
        otherwise the refusal is recorded and raised: Unauthenticated (401), Forbidden (403),
        or TooManyAttempts (429, counted but not recorded: it is the flood)."""
        try:
            identity = self.identify(secret, attempt.client)
        except TooManyAttempts:
            DENIED.labels("429").inc()
            raise
        except Unauthenticated as exc:
            DENIED.labels("401").inc()
            self._record(None, attempt, exc.message)
            raise
        why = refusal(identity, need, attempt.deployment)
        if why is not None:
            DENIED.labels("403").inc()
            self._record(identity, attempt, why)
            raise Forbidden(why)
        return identity

    def cached(self, secret: str, *, stale_ok: bool = False) -> Identity | None:
        """The identity of a secret checked within the last `ttl_s`, without the store. With
        `stale_ok`, one checked within twice that too, and a thread reads it again. Never
        one whose credential has expired since (a JWT past its `exp`)."""
        if len(secret) > JWT_MAX or not secret.isascii():  # only checked secrets are cached
            return None
        key = secret_hash(secret)
        with self._lock:
            found = self._known.get(key)
            if found is None:
                return None
            until = found[0].until
            if until is not None and self._wall() >= until:
                del self._known[key]
                return None
            age = self._clock() - found[1]
            if age < self._ttl_s:
                return found[0]
            if not stale_ok or age >= 2 * self._ttl_s:
                return None
            if key not in self._refreshing:
                self._refreshing.add(key)
                threading.Thread(target=self._refresh, args=(secret, key), daemon=True).start()
            return found[0]

    def _refresh(self, secret: str, key: str) -> None:
        try:
            identity = self._authenticate(secret)
        except Exception:  # revoked, expired, or the store failed: ask the store next time
            with self._lock:
                self._known.pop(key, None)
        else:
            with self._lock:
                if key in self._known:
                    self._known[key] = (identity, self._clock())
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def identify(self, secret: str | None, client: str) -> Identity:
        """The identity `secret` stands for; Unauthenticated when there is none or it is not
        valid, TooManyAttempts while `client` has failed too often (checked first)."""
        now = self._clock()
        with self._lock:
            bucket = self._failures.get(client)
            if bucket is not None and bucket.available(now) < 1.0:
                raise TooManyAttempts(
                    "too many failed attempts from this address", retry_after=bucket.wait()
                )
        if secret is None:
            self._failed(client, now)
            raise Unauthenticated("this needs an API token: Authorization: Bearer <token>")
        # One reading of the store per secret at a time: the requests that find its entry
        # stale together wait for that reading instead of each making their own.
        with self._flights[hash(secret) % len(self._flights)]:
            known = self.cached(secret)
            if known is not None:
                return known
            try:
                identity = self._authenticate(secret)
            except Unauthenticated:
                self._failed(client, now)
                raise
            with self._lock:
                self._known[secret_hash(secret)] = (identity, self._clock())
                self._known.move_to_end(secret_hash(secret))
                while len(self._known) > MAX_TRACKED:
                    self._known.popitem(last=False)
        return identity

    def _failed(self, client: str, now: float) -> None:
        with self._lock:
            bucket = self._failures.get(client)
            if bucket is None:
                bucket = self._failures[client] = TokenBucket(self._rate, self._burst)
            self._failures.move_to_end(client)
            bucket.take(now)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)
