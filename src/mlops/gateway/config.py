"""The gateway's settings, handed from `mlops serve` to each worker process by environment."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from mlops.core.sso import DEFAULT_ALGORITHMS, SsoSettings, sso_settings
from mlops.errors import InvalidInput

CONFIG_ENV = "MLOPS_GATEWAY_CONFIG"


@dataclass
class GatewayConfig:
    home: str | None = None
    store: str | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_rows: int = 1024
    batch_max_rows: int = 64
    batch_max_wait_ms: float = 0.0
    queue_max_rows: int = 2048
    timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    """Seconds a client has to send a request's headers, then as many for its body."""
    limit_concurrency: int = 1024
    """Open connections (or requests in progress) per worker before new requests get 503."""
    keep_warm_s: float = 600.0
    flush_interval_s: float = 1.0
    fast_flush_s: float = 0.2
    """Flush interval while some deployment splits or mirrors traffic (a rollout)."""
    log_predictions: bool = True
    retention_s: float = 7 * 24 * 3600.0
    poll_s: float = 0.02
    max_staleness_s: float = 5.0
    """Seconds without contact with the store after which this gateway serves only the releases
    that were stable when it lost contact (candidates and mirrors stop), until contact is back."""
    controller: bool = True
    """Run the rollout controller in this process too (one leads across all, by a lease)."""
    labels_per_s: float = 200.0
    """Delayed labels taken per second and deployment by one worker (more: 429)."""
    api: bool = True
    """Serve the control API (`/api/v1`) beside the data plane."""
    gateway: bool = True
    """Serve the data plane; without it, only the control API (a control-plane host)."""
    max_upload_bytes: int = 1024 * 1024 * 1024
    """The largest artifact the control API takes in a registration."""
    predict_token: bool = False
    """Predictions need a token with the `predict` scope (delayed labels always need one)."""
    trusted_proxies: list[str] = field(default_factory=list)
    """Addresses or networks whose X-Forwarded-For names the client (behind a balancer)."""
    jwt_jwks: str | None = None
    """A JWKS file or URL: bearer JWTs its keys sign are accepted too (docs/security.md)."""
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: list[str] = field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    jwt_claim: str = "groups"
    """The claim that lists the caller's groups."""
    jwt_roles: list[str] = field(default_factory=list)
    """`GROUP=RIGHT[:GLOB]`: what the members of a group may do, and where."""
    jwt_name_claim: str = "sub"
    grpc_port: int | None = None
    """Serve the Open Inference Protocol over gRPC on this port too, in every worker."""
    grpc_host: str = "127.0.0.1"
    tls_cert: str | None = None
    """The PEM certificate and key of `--tls-cert`/`--tls-key`, for the gRPC server (uvicorn
    takes them itself for HTTP)."""
    tls_key: str | None = None
    worker: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")

    def __post_init__(self) -> None:
        self.sso()  # refused where it is made: at `mlops serve`, before a worker starts

    def sso(self) -> SsoSettings | None:
        """The checked SSO settings (None: JWTs are not accepted); InvalidInput says what is
        wrong with them, or with the JWKS file they name."""
        from mlops.service.sso import read_jwks_file

        try:
            settings = sso_settings(
                jwks=self.jwt_jwks,
                issuer=self.jwt_issuer,
                audience=self.jwt_audience,
                algorithms=self.jwt_algorithms,
                groups_claim=self.jwt_claim,
                name_claim=self.jwt_name_claim,
                roles=self.jwt_roles,
            )
            if settings is not None and settings.jwks_url is None:
                read_jwks_file(settings.jwks)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return settings

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> GatewayConfig:
        raw = os.environ.get(CONFIG_ENV)
        config = cls(**json.loads(raw)) if raw else cls()
        config.worker = f"{os.uname().nodename}:{os.getpid()}"
        return config
