"""`mlops serve`: the gateway's options, turned into its configuration, run under uvicorn."""

from __future__ import annotations

import copy
import os
import resource
import tempfile
from typing import Annotated, Any

import typer

from mlops.cli import render
from mlops.cli.exits import handled
from mlops.cli.options import DAY_S, HOUR_S, bounded
from mlops.cli.state import service
from mlops.errors import InvalidInput
from mlops.settings import redact

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
LogPredictionsOpt = Annotated[bool, typer.Option(help="keep predictions to join delayed labels")]
RetentionOpt = Annotated[
    float, bounded(0.001, 3650, help="days measurements and predictions are kept")
]
UploadOpt = Annotated[float, bounded(0.001, 65536, help="largest artifact the control API takes")]
ControllerOpt = Annotated[
    bool, typer.Option("--controller/--no-controller", help="drive rollouts from here too")
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
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve every deployment over KServe V1 and V2, and the control API under /api/v1
    (Ctrl-C lets in-flight requests finish)."""
    from mlops.serving import CONFIG_ENV, GatewayConfig

    _check_planes(api, gateway, trusted_proxy or [])

    svc = service(ctx)  # fail fast, and migrate once, before any worker starts
    config = GatewayConfig(
        home=str(svc.settings.home),
        store=svc.settings.store_url,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_batch_rows=max_rows,
        batch_max_rows=batch_max_rows,
        batch_max_wait_ms=batch_wait_ms,
        queue_max_rows=queue_rows,
        timeout_s=timeout,
        body_timeout_s=body_timeout,
        limit_concurrency=limit_concurrency or _default_concurrency(),
        keep_warm_s=keep_warm,
        log_predictions=log_predictions,
        retention_s=retention_days * 24 * 3600,
        controller=run_controller,
        labels_per_s=labels_per_second,
        api=api,
        gateway=gateway,
        trusted_proxies=list(trusted_proxy or []),
        predict_token=predict_token,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
    )
    svc.close()
    os.environ[CONFIG_ENV] = config.to_env()
    _run(host, port, workers, log_level, store=svc.settings.store_url)


def _check_planes(api: bool, gateway: bool, trusted_proxies: list[str]) -> None:
    from mlops.core.access import parse_networks

    if not (api or gateway):
        raise InvalidInput("--no-api and --no-gateway together leave nothing to serve")
    try:
        parse_networks(trusted_proxies)
    except ValueError as exc:
        raise InvalidInput(f"invalid --trusted-proxy: {exc}") from None


WORKER_HEALTHCHECK_S = 60


def _run(host: str, port: int, workers: int, log_level: str, *, store: str) -> None:
    """Run the gateway's workers under uvicorn until stopped; each reads its config from the
    environment."""
    import uvicorn

    from mlops.gateway.protocol import GuardedHttpToolsProtocol

    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-prometheus-")
    render.err.print(
        f"mlops gateway on http://{host}:{port} ({workers} worker(s)); store {redact(store)}"
    )
    uvicorn.run(
        "mlops.serving:create_app",
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
    )


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
