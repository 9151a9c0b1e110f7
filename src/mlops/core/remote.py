"""Remote versions: a model served by an existing Open Inference Protocol (V2) server —
MLServer, Triton, KServe — registered from a small JSON or YAML file that says where it is:

    remote:
      url: http://models.internal:8080   # http(s):// speaks V2 REST, grpc(s):// V2 gRPC
      model: fraud                        # the remote model's name
      version: "3"                        # optional: the remote's own version
      timeout_s: 2                        # per attempt
      retries: 1                          # attempts after a failed connection or a 502/503/504
      token_env: MLOPS_REMOTE_TOKEN_FRAUD # optional: a bearer token, read where it is served
      ca_file: /etc/mlops/models-ca.pem   # optional: the CA that signs the server's certificate
      outputs: {predict: predict, probabilities: predict_proba}   # optional
      kind: classification                # optional: else told from the remote's outputs

The file holds no secret: a token is read from the named environment variable of the process
that calls the server, one whose name starts with `MLOPS_REMOTE_TOKEN_` (whoever registers a
version must not be able to send the process's other secrets to a server, even a listed one).
Only hosts an operator lists may be registered or called (`MLOPS_REMOTE_HOSTS`), so nobody who
may register a version can make mlops send requests to an address of their choosing. This
module reads the file and the list; it does no I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mlops.errors import InvalidInput

KEY = "remote"
ALLOW_ENV = "MLOPS_REMOTE_HOSTS"
SCHEMES = {"http": "rest", "https": "rest", "grpc": "grpc", "grpcs": "grpc"}
DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443}
KEYS = (
    "url",
    "model",
    "version",
    "timeout_s",
    "retries",
    "token_env",
    "ca_file",
    "outputs",
    "kind",
)
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
"""A remote model's name or version: what fits in a URL path segment as it is."""
TOKEN_PREFIX = "MLOPS_REMOTE_TOKEN_"
ENV_NAME = re.compile(TOKEN_PREFIX + r"[A-Z0-9_]{1,100}")
HOST_ENTRY = re.compile(r"[A-Za-z0-9.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
TIMEOUT_RANGE = (0.05, 300.0)
MAX_RETRIES = 5
MAX_URL = 2048
KINDS = ("classification", "regression")
FORMAT_HINT = (
    "expected {remote: {url: http://HOST:PORT, model: NAME, version: …, timeout_s: …, "
    "retries: …, token_env: …, ca_file: …}}"
)


@dataclass(frozen=True)
class RemoteSpec:
    """Where a remote version is served, and how to call it."""

    url: str
    """The server's address: scheme, host, port and (REST only) a path prefix, no slash at
    the end."""
    protocol: str
    """`rest` or `grpc`."""
    host: str
    port: int
    tls: bool
    model: str
    version: str | None = None
    timeout_s: float = 5.0
    retries: int = 1
    token_env: str | None = None
    ca_file: str | None = None
    predict_output: str | None = None
    probability_output: str | None = None
    kind: str | None = None

    @property
    def model_path(self) -> str:
        """The V2 path of the model (REST), below `/v2/`."""
        path = f"models/{self.model}"
        return f"{path}/versions/{self.version}" if self.version else path

    @property
    def where(self) -> str:
        """How messages name it (no token, no path)."""
        version = f" version {self.version}" if self.version else ""
        return f"{self.model}{version} at {self.protocol} {self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_remote_spec(mapping: dict[Any, Any]) -> bool:
    """Whether a JSON or YAML mapping is meant as a remote version's file."""
    return KEY in mapping


def parse_remote(mapping: Any, what: str) -> RemoteSpec:
    """The remote spec a document holds, or InvalidInput naming what is wrong in it."""
    if not isinstance(mapping, dict) or set(mapping) != {KEY}:
        raise InvalidInput(
            f"{what}: a remote version's file holds one key, 'remote'; {FORMAT_HINT}"
        )
    body = mapping[KEY]
    if not isinstance(body, dict):
        raise InvalidInput(f"{what}: 'remote' must be a mapping; {FORMAT_HINT}")
    unknown = sorted(str(k) for k in body if k not in KEYS)
    if unknown:
        raise InvalidInput(
            f"{what}: unknown key(s) {', '.join(unknown[:5])} in 'remote'; known: {', '.join(KEYS)}"
        )
    url = _text(body, "url", what, required=True)
    assert url is not None
    scheme, host, port, prefix = _split_url(url, what)
    model = _name(body, "model", what, required=True)
    assert model is not None
    token_env = _text(body, "token_env", what)
    if token_env is not None and not ENV_NAME.fullmatch(token_env):
        raise InvalidInput(
            f"{what}: remote.token_env must name an environment variable {TOKEN_PREFIX}NAME "
            "(NAME of A-Z, 0-9, _)"
        )
    tls = scheme in ("https", "grpcs")
    if token_env is not None and not tls and not is_loopback(host):
        raise InvalidInput(
            f"{what}: a token goes only over TLS (https:// or grpcs://) or to a loopback address"
        )
    ca_file = _text(body, "ca_file", what)
    if ca_file is not None and not tls:
        raise InvalidInput(f"{what}: remote.ca_file needs https:// or grpcs://")
    outputs = body.get("outputs") or {}
    if not isinstance(outputs, dict) or set(outputs) - {"predict", "probabilities"}:
        raise InvalidInput(
            f"{what}: remote.outputs maps 'predict' and 'probabilities' to output names"
        )
    kind = _text(body, "kind", what)
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"{what}: remote.kind is one of {', '.join(KINDS)}")
    base = f"{scheme}://{host_port(host, port)}{prefix}"
    return RemoteSpec(
        url=base,
        protocol=SCHEMES[scheme],
        host=host,
        port=port,
        tls=tls,
        model=model,
        version=_name(body, "version", what),
        timeout_s=_number(body, "timeout_s", what, 5.0, TIMEOUT_RANGE),
        retries=int(_number(body, "retries", what, 1, (0, MAX_RETRIES), whole=True)),
        token_env=token_env,
        ca_file=ca_file,
        predict_output=_name(outputs, "predict", what, prefix="remote.outputs."),
        probability_output=_name(outputs, "probabilities", what, prefix="remote.outputs."),
        kind=kind,
    )


def _split_url(url: str, what: str) -> tuple[str, str, int, str]:
    if len(url) > MAX_URL or not url.isascii() or any(c.isspace() for c in url):
        raise InvalidInput(
            f"{what}: remote.url must be a URL of printable ASCII, at most {MAX_URL} characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{what}: remote.url is not a URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"{what}: remote.url must start with http://, https:// (V2 REST), grpc:// or "
            "grpcs:// (V2 gRPC)"
        )
    if parts.username or parts.password:
        raise InvalidInput(f"{what}: remote.url must not hold credentials: use token_env")
    if parts.query or parts.fragment:
        raise InvalidInput(f"{what}: remote.url takes no query or fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput(f"{what}: remote.url names no host")
    prefix = parts.path.rstrip("/")
    if prefix and SCHEMES[scheme] == "grpc":
        raise InvalidInput(f"{what}: a grpc:// URL takes no path")
    if prefix and not re.fullmatch(r"(/[A-Za-z0-9_.~\-]+)+", prefix):
        raise InvalidInput(f"{what}: remote.url's path may hold only letters, digits and _.~-")
    return scheme, host, port or DEFAULT_PORTS[scheme], prefix


def host_port(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _text(body: dict[Any, Any], key: str, what: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{what}: remote.{key} is required; {FORMAT_HINT}")
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise InvalidInput(f"{what}: remote.{key} must be a non-empty string")
    return value


def _name(
    body: dict[Any, Any], key: str, what: str, *, required: bool = False, prefix: str = "remote."
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{what}: {prefix}{key} is required; {FORMAT_HINT}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not NAME.fullmatch(value) or value in (".", ".."):
        raise InvalidInput(
            f"{what}: {prefix}{key} must be 1 to 128 letters, digits or _.- (not starting "
            "with . or -)"
        )
    return value


def _number(
    body: dict[Any, Any],
    key: str,
    what: str,
    default: float,
    bounds: tuple[float, float],
    *,
    whole: bool = False,
) -> float:
    value = body.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and whole:
        ok = isinstance(value, int)
    if not ok or not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        kind = "a whole number" if whole else "a number"
        raise InvalidInput(
            f"{what}: remote.{key} must be {kind} from {bounds[0]:g} to {bounds[1]:g}"
        )
    return float(value)


@dataclass(frozen=True)
class AllowList:
    """The hosts (and ports) remote versions may be served from, as an operator listed them."""

    entries: tuple[tuple[str, int | None], ...] = ()

    def allows(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return any(h == host and p in (None, port) for h, p in self.entries)

    def check(self, spec: RemoteSpec, what: str) -> None:
        """InvalidInput unless the spec's server is listed."""
        if not self.entries:
            raise InvalidInput(
                f"{what}: remote versions are off: list the model servers that may serve them "
                f"in {ALLOW_ENV} (HOST or HOST:PORT, separated by commas) where mlops runs"
            )
        if not self.allows(spec.host, spec.port):
            raise InvalidInput(
                f"{what}: {host_port(spec.host, spec.port)} is not among the model servers "
                f"{ALLOW_ENV} allows"
            )


def parse_allow_list(text: str | None) -> AllowList:
    """`MLOPS_REMOTE_HOSTS`: HOST or HOST:PORT entries separated by commas (IPv6 in brackets)."""
    entries: list[tuple[str, int | None]] = []
    for raw in (text or "").split(","):
        item = raw.strip()
        if not item:
            continue
        host, port = item, None
        match = re.fullmatch(r"(.+):(\d{1,5})", item)
        if match and not (item.count(":") > 1 and not item.startswith("[")):
            host, port = match.group(1), int(match.group(2))
        if not HOST_ENTRY.fullmatch(host) or (port is not None and not 0 < port < 65536):
            raise InvalidInput(
                f"{ALLOW_ENV}: {item[:80]!r} is not HOST or HOST:PORT (IPv6 in brackets)"
            )
        entries.append((host.lower().strip("[]"), port))
    return AllowList(tuple(entries))
