"""`mlops serve`: the gateway's options, turned into its configuration, run under uvicorn."""

from __future__ import annotations

import copy
import os
import resource
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlops.cli.exits import handled
from mlops.cli.options import DAY_S, HOUR_S, bounded, render
from mlops.cli.state import local_service
from mlops.errors import InvalidInput
from mlops.settings import redact

if TYPE_CHECKING:
    from mlops.gateway.config import GatewayConfig
    from mlops.settings import Settings

BodyTimeoutOpt = Annotated[
    float,
    typer.Option(
        help="seconds a client has to send a request's headers, then its body (408)",
        min=0.1,
        max=3600,
    ),
]
ConcurrencyOpt = Annotated[
    int,
    typer.Option(
        help="open connections per worker before new requests get 503 "
        "(0: half the process's file descriptor limit, at most 1024)",
        min=0,
    ),
]
LabelsOpt = Annotated[
    float,
    typer.Option(
        help="delayed labels taken per second per deployment and worker", min=0.1, max=1e6
    ),
]
ApiOpt = Annotated[bool, typer.Option("--api/--no-api", help="serve the control API under /api/v1")]
GatewayOpt = Annotated[
    bool,
    typer.Option(
        "--gateway/--no-gateway", help="serve predictions (without: a control-plane host)"
    ),
]
PredictTokenOpt = Annotated[
    bool,
    typer.Option(
        "--predict-token/--open-predictions",
        help="predictions need a token with the predict scope (labels always need one)",
    ),
]
ProxyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--trusted-proxy",
        help="address or network of a load balancer whose X-Forwarded-For names the client; "
        "repeatable",
    ),
]
BatchRowsOpt = Annotated[int, bounded(1, 100_000, help="rows gathered into one predict call")]
QueueRowsOpt = Annotated[int, bounded(1, 10_000_000, help="rows queued per pipeline before 503")]
TimeoutOpt = Annotated[float, bounded(0.001, HOUR_S, help="seconds before a request gets 504")]
KeepWarmOpt = Annotated[
    float, bounded(0, 30 * DAY_S, help="seconds a replaced version stays loaded")
]
StalenessOpt = Annotated[
    float,
    bounded(
        0.5,
        3600,
        help="seconds without the store after which only stable releases are served",
    ),
]
LogPredictionsOpt = Annotated[bool, typer.Option(help="keep predictions to join delayed labels")]
RetentionOpt = Annotated[
    float, bounded(0.001, 3650, help="days measurements and predictions are kept")
]
UploadOpt = Annotated[float, bounded(0.001, 65536, help="largest artifact the control API takes")]
ControllerOpt = Annotated[
    bool, typer.Option("--controller/--no-controller", help="drive rollouts from here too")
]
JwksOpt = Annotated[
    str | None,
    typer.Option(
        "--jwt-jwks",
        metavar="FILE_OR_URL",
        help="accept bearer JWTs signed by the keys of this JWKS file or https URL (SSO)",
    ),
]
IssuerOpt = Annotated[
    str | None, typer.Option("--jwt-issuer", metavar="ISS", help="the JWTs' issuer (iss)")
]
AudienceOpt = Annotated[
    str | None, typer.Option("--jwt-audience", metavar="AUD", help="the JWTs' audience (aud)")
]
AlgorithmsOpt = Annotated[
    str,
    typer.Option("--jwt-algorithms", help="signature algorithms allowed (public-key ones only)"),
]
ClaimOpt = Annotated[str, typer.Option("--jwt-claim", help="the claim listing the groups")]
JwtRoleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--jwt-role",
        metavar="GROUP=ROLE[:GLOB]",
        help="a group's role (viewer, operator, admin) or scope (feedback, predict), on the "
        "deployments GLOB covers (*); repeatable",
    ),
]
CertOpt = Annotated[
    Path | None,
    typer.Option(help="serve HTTPS with this PEM certificate (chain); needs --tls-key"),
]
KeyOpt = Annotated[Path | None, typer.Option(help="the PEM private key of --tls-cert")]
GrpcPortOpt = Annotated[
    int | None,
    bounded(
        0,
        65535,
        help="also serve the Open Inference Protocol over gRPC on this port (every worker; "
        "TLS and predict tokens as on HTTP)",
    ),
]
NameClaimOpt = Annotated[
    str, typer.Option("--jwt-name-claim", help="the claim naming the caller: jwt:<value>")
]


@handled
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, bounded(0, 65535, help="port to listen on")] = 8000,
    workers: Annotated[int, bounded(1, 256, help="worker processes")] = 1,
    batch_max_rows: BatchRowsOpt = 64,
    batch_wait_ms: Annotated[float, bounded(0, 60_000, help="extra wait to gather a batch")] = 0.0,
    max_rows: Annotated[int, bounded(1, 1_000_000, help="rows allowed in one request")] = 1024,
    max_body_mb: Annotated[float, bounded(0.001, 1024, help="largest request body")] = 8.0,
    queue_rows: QueueRowsOpt = 2048,
    timeout: TimeoutOpt = 10.0,
    keep_warm: KeepWarmOpt = 600.0,
    max_staleness: StalenessOpt = 5.0,
    body_timeout: BodyTimeoutOpt = 10.0,
    limit_concurrency: ConcurrencyOpt = 0,
    log_predictions: LogPredictionsOpt = True,
    retention_days: RetentionOpt = 7.0,
    run_controller: ControllerOpt = True,
    labels_per_second: LabelsOpt = 200.0,
    api: ApiOpt = True,
    gateway: GatewayOpt = True,
    trusted_proxy: ProxyOpt = None,
    predict_token: PredictTokenOpt = False,
    max_upload_mb: UploadOpt = 1024.0,
    jwt_jwks: JwksOpt = None,
    jwt_issuer: IssuerOpt = None,
    jwt_audience: AudienceOpt = None,
    jwt_algorithms: AlgorithmsOpt = "RS256,ES256",
    jwt_claim: ClaimOpt = "groups",
    jwt_role: JwtRoleOpt = None,
    jwt_name_claim: NameClaimOpt = "sub",
    tls_cert: CertOpt = None,
    tls_key: KeyOpt = None,
    grpc_port: GrpcPortOpt = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve every deployment over KServe V1 and V2, and the control API under /api/v1
    (Ctrl-C lets in-flight requests finish)."""
    from mlops.serving import CONFIG_ENV

    _check_planes(api, gateway, trusted_proxy or [])
    if grpc_port is not None and (not gateway or grpc_port == port):
        raise InvalidInput(
            "--grpc-port needs the gateway, on a port of its own"
            if gateway
            else "--grpc-port serves predictions: not with --no-gateway"
        )
    tls = _check_tls(tls_cert, tls_key)

    svc = local_service(ctx, "serve")  # fail fast, and migrate once, before any worker starts
    try:
        config = _config(SimpleNamespace(**ctx.params), svc.settings)
    finally:
        svc.close()
    os.environ[CONFIG_ENV] = config.to_env()
    _run(host, port, workers, log_level, store=svc.settings.store_url, tls=tls)


def _config(o: SimpleNamespace, settings: Settings) -> GatewayConfig:
    """The workers' configuration from serve's options (`o`); InvalidInput for bad ones."""
    from mlops.serving import GatewayConfig

    return GatewayConfig(
        home=str(settings.home),
        store=settings.store_url,
        max_body_bytes=int(o.max_body_mb * 1024 * 1024),
        max_batch_rows=o.max_rows,
        batch_max_rows=o.batch_max_rows,
        batch_max_wait_ms=o.batch_wait_ms,
        queue_max_rows=o.queue_rows,
        timeout_s=o.timeout,
        body_timeout_s=o.body_timeout,
        limit_concurrency=o.limit_concurrency or _default_concurrency(),
        keep_warm_s=o.keep_warm,
        max_staleness_s=o.max_staleness,
        log_predictions=o.log_predictions,
        retention_s=o.retention_days * 24 * 3600,
        controller=o.run_controller,
        labels_per_s=o.labels_per_second,
        api=o.api,
        gateway=o.gateway,
        trusted_proxies=list(o.trusted_proxy or []),
        predict_token=o.predict_token,
        max_upload_bytes=int(o.max_upload_mb * 1024 * 1024),
        jwt_jwks=o.jwt_jwks,
        jwt_issuer=o.jwt_issuer,
        jwt_audience=o.jwt_audience,
        jwt_algorithms=[o.jwt_algorithms],
        jwt_claim=o.jwt_claim,
        jwt_roles=list(o.jwt_role or []),
        jwt_name_claim=o.jwt_name_claim,
        grpc_port=o.grpc_port,
        grpc_host=o.host,
        tls_cert=str(o.tls_cert) if o.tls_cert else None,
        tls_key=str(o.tls_key) if o.tls_key else None,
    )


def _check_planes(api: bool, gateway: bool, trusted_proxies: list[str]) -> None:
    from mlops.core.access import parse_networks

    if not (api or gateway):
        raise InvalidInput("--no-api and --no-gateway together leave nothing to serve")
    try:
        parse_networks(trusted_proxies)
    except ValueError as exc:
        raise InvalidInput(f"invalid --trusted-proxy: {exc}") from None


WORKER_HEALTHCHECK_S = 60


def _check_tls(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """The certificate and key files, checked to load together; None for plain HTTP."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidInput("--tls-cert and --tls-key go together")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"cannot use {cert} with {key} for TLS: {exc}") from None
    return str(cert), str(key)


def _run(
    host: str,
    port: int,
    workers: int,
    log_level: str,
    *,
    store: str,
    tls: tuple[str, str] | None = None,
) -> None:
    """Run the gateway's workers under uvicorn until stopped; each reads its config from the
    environment."""
    import uvicorn

    from mlops.gateway.protocol import GuardedHttpToolsProtocol

    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-prometheus-")
    render.err.print(
        f"mlops gateway on {'https' if tls else 'http'}://{host}:{port} ({workers} worker(s));"
        f" store {redact(store)}"
    )
    options: dict[str, Any] = dict(
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        log_config=_log_config(log_level),
        http=GuardedHttpToolsProtocol,
        timeout_keep_alive=5,
        # uvicorn restarts a worker that misses a 5 s health ping; one still importing its
        # models on a loaded machine would be restarted over and over.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    if workers == 1 or port == 0:
        uvicorn.run("mlops.serving:create_app", **options)
        return
    from uvicorn.supervisors.multiprocess import Multiprocess

    from mlops.gateway.listen import OwnListeners, port_is_free

    if not port_is_free(host, port):
        raise InvalidInput(f"cannot listen on {host}:{port}: the address is in use")
    config = uvicorn.Config("mlops.serving:create_app", **options)
    Multiprocess(config, sockets=OwnListeners(host, port, config.backlog)).run()


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with the gateway's own lines ("mlops.*") at the same level."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mlops"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def _default_concurrency() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 2))
