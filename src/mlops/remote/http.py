"""One server's control API over HTTP(S): a JSON call in, a JSON value or an mlops error out.

A token goes only over TLS, or to a loopback address, unless the caller allows plain HTTP.
A refusal comes back as the error the server raised (`application/problem+json` carries its
kind), so a remote command fails with the same message and exit code as a local one."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from mlops import errors
from mlops.errors import DependencyFailed, InvalidInput, MlopsError, StoreUnavailable

API = "/api/v1"
TIMEOUT_S = 60.0
ANSWER_MAX = 64 << 20
"""The largest answer read (bytes): a listing of 10,000 items fits many times over."""


@dataclass(frozen=True)
class Remote:
    """Where the API is and how to reach it."""

    url: str
    token: str | None = None
    ca_file: str | None = None
    allow_http: bool = False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_remote(remote: Remote) -> urllib.parse.SplitResult:
    """The URL, parsed, if it may carry the token; InvalidInput otherwise."""
    parts = urllib.parse.urlsplit(remote.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"server URL must be http(s)://HOST[:PORT], not {remote.url!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput("server URL must hold no credentials, query or fragment")
    plain = parts.scheme == "http" and not is_loopback(parts.hostname)
    if plain and remote.token and not remote.allow_http:
        raise InvalidInput(
            f"refusing to send a token over plain HTTP to {parts.hostname}: use https, "
            "or allow it with MLOPS_ALLOW_HTTP=1"
        )
    return parts


class Connection:
    """Calls to one server, over one kept-alive connection."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self._parts = check_remote(remote)
        self._base = self._parts.path.rstrip("/") + API
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self._parts.hostname or "", self._parts.port
            if self._parts.scheme == "https":
                context = ssl.create_default_context(cafile=self.remote.ca_file)
                self._conn = http.client.HTTPSConnection(
                    host, port, timeout=TIMEOUT_S, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
        return self._conn

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        query: Mapping[str, Any] | None = None,
        upload: IO[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON answer of `method path`; the server's error, raised, for a refusal."""
        target = self._base + path
        pairs = _query_pairs(query or {})
        if pairs:
            target += "?" + urllib.parse.urlencode(pairs)
        sent = dict(headers or {})
        if self.remote.token:
            sent["authorization"] = f"Bearer {self.remote.token}"
        payload: bytes | IO[bytes] | None = upload
        if body is not None:
            payload = json.dumps(body).encode()
            sent["content-type"] = "application/json"
        elif upload is None and method == "POST":
            payload = b""
        status, kind, data = self._exchange(method, target, payload, sent)
        if status >= 400:
            raise _error(status, kind, data)
        return _json(data)

    def _exchange(
        self, method: str, target: str, payload: bytes | IO[bytes] | None, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        try:
            conn = self._connection()
            conn.request(method, target, body=payload, headers=headers)
            answer = conn.getresponse()
            data = answer.read(ANSWER_MAX + 1)
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise DependencyFailed(
                f"{self.remote.url}: its TLS certificate is not trusted ({exc.verify_message}); "
                "name the CA bundle with MLOPS_CA_BUNDLE or `mlops login --ca-bundle`"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise StoreUnavailable(f"cannot reach {self.remote.url}: {_reason(exc)}") from None
        if len(data) > ANSWER_MAX:
            self.close()
            raise DependencyFailed(f"{self.remote.url} answered more than {ANSWER_MAX} bytes")
        if answer.will_close:
            self.close()
        return answer.status, answer.headers.get("content-type", ""), data


def _query_pairs(query: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        values = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        pairs += [(key, _text(v)) for v in values if v is not None]
    return pairs


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"no answer within {TIMEOUT_S:.0f} s"
    return str(exc) or type(exc).__name__


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        raise DependencyFailed("the answer is not JSON: is this an mlops server?") from None


def _error(status: int, content_type: str, data: bytes) -> MlopsError:
    """The error a problem document describes, as the class the server raised when known."""
    problem: Any = None
    if content_type.startswith(("application/problem+json", "application/json")):
        try:
            problem = json.loads(data)
        except ValueError:
            problem = None
    if not isinstance(problem, dict) or not isinstance(problem.get("detail"), str):
        return DependencyFailed(f"the server answered HTTP {status}: {data[:200]!r}")
    detail, kind = problem["detail"], problem.get("kind")
    cls = getattr(errors, kind, None) if isinstance(kind, str) and kind.isidentifier() else None
    if isinstance(cls, type) and issubclass(cls, MlopsError):
        if issubclass(cls, errors.TooManyAttempts):
            return cls(detail, retry_after=1.0)
        try:
            return cls(detail)
        except TypeError:
            pass
    return _by_status(status, detail)


def _by_status(status: int, detail: str) -> MlopsError:
    for cls in (errors.NotFound, errors.Conflict, errors.InvalidInput, errors.Forbidden):
        if cls.http_status == status:
            return cls(detail)
    if status == 401:
        return errors.Unauthenticated(detail)
    if status == 503:
        return DependencyFailed(detail)
    return MlopsError(detail)
