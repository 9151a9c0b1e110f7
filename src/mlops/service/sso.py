"""Bearer JWTs of the company's identity provider: its keys read from a JWKS file or fetched
from its URL (cached), each JWT's signature, times, issuer and audience checked with PyJWT,
and its claims mapped to an identity (`core/sso.py`). `authenticator_for` is the one bearer
check of a worker's HTTP faces: mlops tokens go to the store, JWTs to the verifier. Every
refusal is Unauthenticated with a short reason that never shows the token."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt

from mlops.core.access import Identity
from mlops.core.sso import JWT_MAX, LEEWAY_S, SsoSettings, identity_of, is_jwt, jwks_keys, key_fits
from mlops.errors import Unauthenticated
from mlops.ratelog import RateLimitedLog
from mlops.service import Service
from mlops.service.authn import Authenticator

JWKS_MAX_BYTES = 1024 * 1024
FETCH_TIMEOUT_S = 5.0
KEYS_MAX_AGE_S = 300.0
"""How long fetched keys are used before they are fetched again."""
REFETCH_AFTER_S = 2.0
"""The least time between two fetches: a JWT naming an unknown key id (a rotation) fetches
the keys again only this long after the last try, however many such JWTs come."""
NOT_HERE = "JWTs are not accepted here: start mlops serve with --jwt-jwks"

Keys = dict[str, dict[str, Any]]
_LOG = RateLimitedLog(logging.getLogger("mlops.sso"))


class KeySource(Protocol):
    def key(self, kid: str) -> dict[str, Any] | None:
        """The public key (a JWK) of that key id; None when the identity provider has none."""
        ...


def read_jwks_file(path: str) -> Keys:
    """The signing keys of a JWKS file; ValueError names what is wrong with it."""
    try:
        with open(path, "rb") as f:
            raw = f.read(JWKS_MAX_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the JWKS file {path}: {exc.strerror}") from None
    if len(raw) > JWKS_MAX_BYTES:
        raise ValueError(f"the JWKS file {path} is larger than 1 MiB")
    try:
        return jwks_keys(json.loads(raw))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the JWKS file {path}: {exc}") from None


class FileKeys:
    """The keys of a JWKS file, read again when a JWT names a key id they lack and the file
    has changed since (a rotation needs no restart)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp = self._stamp_now()
        self._keys = read_jwks_file(path)

    def _stamp_now(self) -> tuple[int, int]:
        stat = Path(self._path).stat()
        return stat.st_mtime_ns, stat.st_size

    def key(self, kid: str) -> dict[str, Any] | None:
        with self._lock:
            if kid not in self._keys:
                try:
                    stamp = self._stamp_now()
                    if stamp != self._stamp:
                        self._keys, self._stamp = read_jwks_file(self._path), stamp
                except (OSError, ValueError) as exc:
                    _LOG.log(logging.WARNING, "jwks", "JWKS file not read again: %s", exc)
            return self._keys.get(kid)


class UrlKeys:
    """The keys at a JWKS URL: fetched when first needed, again after `max_age_s`, and when
    a JWT names a key id they lack, but never twice within `refetch_s`. When a fetch fails
    the keys last fetched stay in use."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = FETCH_TIMEOUT_S,
        max_age_s: float = KEYS_MAX_AGE_S,
        refetch_s: float = REFETCH_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._timeout_s, self._max_age_s, self._refetch_s = timeout_s, max_age_s, refetch_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: Keys | None = None
        self._fetched = self._tried = -math.inf

    def key(self, kid: str) -> dict[str, Any] | None:
        with self._lock:
            now = self._clock()
            stale = (
                self._keys is None
                or kid not in self._keys
                or now - self._fetched >= self._max_age_s
            )
            if stale and now - self._tried >= self._refetch_s:
                self._fetch(now)
            if self._keys is None:
                raise Unauthenticated("the identity provider's keys could not be fetched")
            return self._keys.get(kid)

    def _fetch(self, now: float) -> None:
        self._tried = now
        try:
            keys = jwks_keys(self._download())
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            _LOG.log(logging.WARNING, "jwks", "JWKS not fetched from %s: %s", self._url, exc)
            return
        self._keys, self._fetched = keys, now

    def _download(self) -> object:
        deadline = time.monotonic() + self._timeout_s
        body = bytearray()
        with httpx.stream("GET", self._url, timeout=self._timeout_s) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP status {response.status_code}")
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise ValueError("the answer is larger than 1 MiB")
                if time.monotonic() > deadline:
                    raise ValueError(f"not read within {self._timeout_s:g} s")
        return json.loads(body)


def keys_for(settings: SsoSettings) -> KeySource:
    url = settings.jwks_url
    return UrlKeys(url) if url is not None else FileKeys(settings.jwks)


_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "the JWT has expired"),
    (jwt.ImmatureSignatureError, "the JWT is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidIssuerError, "the JWT's issuer is not the one this server trusts"),
    (jwt.InvalidAudienceError, "the JWT is meant for another audience"),
    (jwt.InvalidSignatureError, "the JWT's signature does not verify"),
    (jwt.InvalidKeyError, "the identity provider's key for this JWT is unusable"),
    (jwt.DecodeError, "malformed JWT"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the JWT lacks the {exc.claim!r} claim"
    return next((text for kind, text in _REASONS if isinstance(exc, kind)), "invalid JWT")


class JwtVerifier:
    """Who a bearer JWT stands for, once its header, key, signature and claims check out."""

    def __init__(self, settings: SsoSettings, keys: KeySource) -> None:
        self._settings = settings
        self._keys = keys

    def identify(self, token: str) -> Identity:
        algorithm, kid = self._header(token)
        key = self._keys.key(kid)
        if key is None:
            raise Unauthenticated("the JWT's key id (kid) is not among the identity provider's")
        if not key_fits(algorithm, key):
            raise Unauthenticated("the JWT's algorithm does not fit its key")
        try:
            jwk = jwt.PyJWK(key, algorithm)
        except jwt.PyJWTError:
            raise Unauthenticated("the identity provider's key for this JWT is unusable") from None
        return identity_of(self._claims(token, jwk, algorithm), self._settings)

    def _header(self, token: str) -> tuple[str, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        allowed = self._settings.algorithms
        if not isinstance(algorithm, str) or algorithm not in allowed:
            raise Unauthenticated(
                f"the JWT's algorithm is not accepted (only {', '.join(allowed)})"
            )
        if not isinstance(kid, str):
            raise Unauthenticated("the JWT names no key id (kid)")
        return algorithm, kid

    def _claims(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=LEEWAY_S,
                options={
                    "require": ["exp", "iat", "iss", "aud"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(_reason(exc)) from None


def bearer_check(
    tokens: Callable[[str], Identity], jwts: JwtVerifier | None
) -> Callable[[str], Identity]:
    """One check for every bearer value, routed by its shape: a JWT (three base64url parts)
    to `jwts`, anything else to the token service `tokens`. Over-long values are refused
    before either parses them."""

    def authenticate(bearer: str) -> Identity:
        if len(bearer) > JWT_MAX:
            raise Unauthenticated(f"the bearer value is longer than {JWT_MAX} characters")
        if not is_jwt(bearer):
            return tokens(bearer)
        if jwts is None:
            raise Unauthenticated(NOT_HERE)
        return jwts.identify(bearer)

    return authenticate


def authenticator_for(service: Service, sso: SsoSettings | None) -> Authenticator:
    """The bearer check of a worker's HTTP faces (the control API, the gateway's labels and
    predictions): API tokens, and JWTs of the identity provider when `sso` is set."""
    verifier = JwtVerifier(sso, keys_for(sso)) if sso is not None else None
    return Authenticator(bearer_check(service.authenticate, verifier), service.record_denial)
