"""The `mlops` command. Each command parses, calls the service once, and prints."""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from mlops.cli import render
from mlops.core.refs import MAX_INT, ComponentRef, parse_component, parse_ref, parse_tag
from mlops.errors import BadReference, MlopsError
from mlops.rollout_spec import load_spec, read_spec_file
from mlops.service import HISTORY_LIMIT, LIST_MAX, Service
from mlops.settings import load_settings, redact

app = typer.Typer(
    name="mlops",
    help="Keep every model version, deploy it, and roll back in constant time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts")
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="why: recorded in the event")]

F = TypeVar("F", bound=Callable[..., Any])
N = TypeVar("N", int, float, None)

HOUR_S = 3600.0
DAY_S = 86400.0


def finite(value: N) -> N:
    """Typer's ranges let NaN through (every comparison with it is false): refuse it here."""
    if isinstance(value, float) and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def bounded(lo: float, hi: float, **option: Any) -> Any:
    """An option whose number must lie in [lo, hi] and be finite (exit 2 otherwise)."""
    return typer.Option(min=lo, max=hi, callback=finite, **option)


class State:
    def __init__(self, home: Path | None, store: str | None) -> None:
        self.home = home
        self.store = store
        self._service: Service | None = None

    @property
    def service(self) -> Service:
        if self._service is None:
            self._service = Service(load_settings(home=self.home, store_url=self.store))
        return self._service


def handled(fn: F) -> F:
    """Report an mlops error as one line on stderr and exit with its code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlopsError as exc:
            render.say(f"error: {exc.message}", to=render.err)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader went away (`mlops … | head`): nothing more to say, and nowhere to.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except Exception as exc:
            if os.environ.get("MLOPS_DEBUG"):
                raise
            render.say(
                f"error: internal error {type(exc).__name__}: {exc} "
                "(MLOPS_DEBUG=1 shows the traceback)",
                to=render.err,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def service(ctx: typer.Context) -> Service:
    state: State = ctx.obj
    return state.service


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(help="where the store and artifacts live [env: MLOPS_HOME; default ~/.mlops]"),
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the store [env: MLOPS_STORE]")
    ] = None,
) -> None:
    ctx.obj = State(home, store)


@app.command()
@handled
def register(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="model name, e.g. fraud")],
    path: Annotated[
        Path, typer.Argument(help="model file, MLflow model folder, or params file (JSON/YAML)")
    ],
    flavor: Annotated[
        str | None,
        typer.Option(help="sklearn, skops, onnx, mlflow or params; detected when absent"),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="allow a pickle-based file, which runs code when loaded")
    ] = False,
    sample: Annotated[
        Path | None, typer.Option(help="JSON or CSV input rows: signature and a test prediction")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Register a new version of MODEL from PATH and print its number."""
    tags = dict(parse_tag(t) for t in tag or [])
    version = service(ctx).register(
        model, path, flavor=flavor, tags=tags, trust=trust, sample=sample
    )
    render.emit_json(version) if output == Output.json else render.registered(version)


@app.command()
@handled
def models(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="list this model's versions")] = None,
    limit: Annotated[
        int, bounded(1, LIST_MAX, help="at most this many versions, newest first")
    ] = 50,
    output: OutputOpt = Output.table,
) -> None:
    """List models, or the versions of MODEL."""
    svc = service(ctx)
    if model is None:
        summaries = svc.models()
        render.emit_json(summaries) if output == Output.json else render.models_table(summaries)
        return
    versions = svc.versions(model, limit=limit)
    render.emit_json(versions) if output == Output.json else render.versions_table(model, versions)


@app.command()
@handled
def deploy(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="deployment name, e.g. fraud-api")],
    model: Annotated[
        str | None, typer.Option(help="MODEL:VERSION of the primary component")
    ] = None,
    component: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=MODEL:VERSION, repeatable; NAME is lookup, preprocessor…, model or "
            "postprocessor…"
        ),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option(help="drop component NAME, repeatable")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="deploy a quarantined version, or components that do not fit, anyway"
        ),
    ] = False,
    strategy: Annotated[
        str | None,
        typer.Option(help="direct (default), canary, linear, bluegreen or shadow"),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="rollout spec (YAML): steps, analysis, alerts"),
    ] = None,
    migration: Annotated[
        str | None,
        typer.Option(help="data migration: an .sql file, or a Python callable module:function"),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(help="data resource NAME the release changes, repeatable (default: all)"),
    ] = None,
    reason: ReasonOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Write the next release of DEPLOYMENT with these components, and serve it: at once
    (direct), or step by step under analysis (a rollout the controller drives). With
    --migration, the data it changes is snapshotted first."""
    components: dict[str, ComponentRef] = {}
    for text in component or []:
        name, ref = parse_component(text)
        components[name] = ref
    result = service(ctx).deploy(
        deployment,
        model=parse_ref(model) if model else None,
        components=components,
        remove=frozenset(remove or []),
        force=force,
        reason=reason,
        rollout=(
            read_spec_file(file, strategy=strategy)
            if file
            else load_spec(strategy=strategy or "direct")
        ),
        migration=migration,
        data=tuple(data or ()),
    )
    render.emit_json(result) if output == Output.json else render.release_result(result)


def _rollout_command(
    ctx: typer.Context, deployment: str | None, kind: str, reason: str | None
) -> None:
    command_id = service(ctx).request(deployment, kind, reason=reason)
    render.say(
        f"Requested {kind.replace('_', ' ')} (command {command_id}); "
        "the controller applies it at its next tick"
    )


DeploymentArg = Annotated[str | None, typer.Argument(help="may be left out when there is only one")]


@app.command()
@handled
def promote(
    ctx: typer.Context,
    deployment: DeploymentArg = None,
    full: Annotated[bool, typer.Option("--full", help="skip the remaining steps")] = False,
    reason: ReasonOpt = None,
) -> None:
    """Finish the current rollout step now (or, with --full, promote the candidate)."""
    _rollout_command(ctx, deployment, "promote_full" if full else "promote", reason)


@app.command()
@handled
def abort(ctx: typer.Context, deployment: DeploymentArg = None, reason: ReasonOpt = None) -> None:
    """Stop the rollout: all traffic back to stable; the candidate is not quarantined."""
    _rollout_command(ctx, deployment, "abort", reason)


@app.command()
@handled
def pause(ctx: typer.Context, deployment: DeploymentArg = None, reason: ReasonOpt = None) -> None:
    """Hold the rollout at its current weights (analysis keeps watching)."""
    _rollout_command(ctx, deployment, "pause", reason)


@app.command()
@handled
def resume(ctx: typer.Context, deployment: DeploymentArg = None, reason: ReasonOpt = None) -> None:
    """Resume a paused rollout."""
    _rollout_command(ctx, deployment, "resume", reason)


@app.command()
@handled
def controller(
    ctx: typer.Context,
    tick: Annotated[float, bounded(0.05, HOUR_S, help="seconds between ticks")] = 1.0,
    active_tick: Annotated[
        float, bounded(0.05, HOUR_S, help="seconds between ticks while a rollout is active")
    ] = 0.25,
    lease: Annotated[float, bounded(0.5, HOUR_S, help="seconds a leader's lease lasts")] = 5.0,
) -> None:
    """Run the rollout controller alone (it also runs inside `mlops serve`); one leads."""
    from mlops.controller.judge import analysis_judge
    from mlops.controller.leader import LeaderLoop
    from mlops.controller.loop import Controller

    render.log_safely()
    ctl = Controller(service(ctx), analysis_judge)
    loop = LeaderLoop(
        ctl, tick_s=tick, active_tick_s=active_tick, lease_s=lease, after_tick=ctl.deliver
    )
    render.err.print(f"mlops controller {loop.holder}: ticking every {tick:g} s")
    signal.signal(signal.SIGTERM, lambda *_: loop.request_stop())
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    finally:
        loop.stop()  # gives the lease up: another controller leads at once


@app.command()
@handled
def rollback(
    ctx: typer.Context,
    deployment: Annotated[
        str | None, typer.Argument(help="may be left out when there is only one")
    ] = None,
    version: Annotated[
        int | None,
        bounded(1, MAX_INT, help="version N of the primary model (or of --component)"),
    ] = None,
    revision: Annotated[int | None, bounded(1, MAX_INT, help="release revision R")] = None,
    component: Annotated[str | None, typer.Option(help="roll back this component alone")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="roll back to a quarantined version, or to components that do not fit, anyway",
        ),
    ] = False,
    reason: ReasonOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Make an earlier release stable again, as a new revision (default: the previous one)."""
    result = service(ctx).rollback(
        deployment,
        version=version,
        revision=revision,
        component=component,
        reason=reason,
        force=force,
    )
    render.emit_json(result) if output == Output.json else render.release_result(result)


@app.command()
@handled
def status(
    ctx: typer.Context,
    deployment: Annotated[
        str | None, typer.Argument(help="one deployment; all when left out")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="follow the rollout live until it ends")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """What each deployment serves now; with --watch, follow its rollout (exit 10 if its last
    rollout ended rolled back or aborted)."""
    if watch:
        raise typer.Exit(_watch(service(ctx), deployment, output))
    statuses = service(ctx).status(deployment)
    if output == Output.json:
        render.emit_json(statuses[0] if deployment else statuses)
    else:
        render.status_table(statuses)


def _watch(svc: Service, deployment: str | None, output: Output) -> int:
    import json
    import time

    from rich.live import Live

    first = svc.status(deployment)
    if len(first) != 1:
        raise BadReference("--watch follows one deployment: name it")
    name = first[0].deployment
    # A terminal gets a live view; a pipe gets a line (or a JSON object) each time it changes.
    live = None
    if output == Output.table and render.out.is_terminal:
        live = Live(console=render.out, refresh_per_second=4)
        live.start()
    shown = ""
    try:
        while True:
            current = svc.status(name)[0]
            if live is not None:
                live.update(render.watch_view(current, svc.measurements(name, window_s=60)))
            else:
                line = (
                    json.dumps(current.to_dict())
                    if output == Output.json
                    else render.watch_line(current)
                )
                if line != shown:
                    print(line, flush=True)  # watch_line is safe; JSON escapes
                    shown = line
            if current.rollout is None:
                break
            time.sleep(0.5)
    finally:
        if live is not None:
            live.stop()
    if live is None and output == Output.table:
        render.out.print(render.watch_view(current, svc.measurements(name, window_s=60)))
    # The newest release tells how the last rollout ended, even one that ended before the
    # watch began (`mlops deploy … && mlops status --watch` in a pipeline).
    newest = svc.history(name, limit=1)
    return 10 if newest and newest[0].status in ("rolled_back", "aborted") else 0


@app.command()
@handled
def history(
    ctx: typer.Context,
    deployment: Annotated[
        str | None, typer.Argument(help="may be left out when there is only one")
    ] = None,
    limit: Annotated[int, bounded(1, LIST_MAX, help="at most this many releases")] = HISTORY_LIMIT,
    before: Annotated[
        int | None, bounded(1, MAX_INT, help="only revisions below this one (paging)")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """The releases of DEPLOYMENT, newest first, each with who made it, how and why."""
    records = service(ctx).history(deployment, limit=limit, before=before)
    render.emit_json(records) if output == Output.json else render.history_table(records)


@app.command()
@handled
def events(
    ctx: typer.Context,
    deployment: Annotated[
        str | None, typer.Argument(help="one deployment; every event when left out")
    ] = None,
    limit: Annotated[int, bounded(1, LIST_MAX, help="at most this many events")] = 50,
    output: OutputOpt = Output.table,
) -> None:
    """The audit trail, newest first: each event with its trigger, its actor (a name claimed
    through MLOPS_ACTOR is marked so) and its reason."""
    found = service(ctx).events(deployment, limit=limit)
    render.emit_json(found) if output == Output.json else render.events_table(found)


@app.command()
@handled
def quarantine(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="MODEL:VERSION")],
    reason: ReasonOpt = None,
    lift: Annotated[bool, typer.Option("--lift", help="lift the quarantine")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Mark a version bad: deploying or rolling back to it then needs --force."""
    version = service(ctx).quarantine(parse_ref(ref), reason=reason, lift=lift)
    if output == Output.json:
        render.emit_json(version)
    elif lift:
        render.say(f"{version.ref} is no longer quarantined")
    else:
        render.say(f"{version.ref} is quarantined: {version.quarantine_reason}")


def _revision_shares(values: list[str] | None, what: str) -> dict[int, float]:
    """`7=10` -> {7: 10.0}: a revision from 1 to MAX_INT, a finite percent from 0 to 100."""
    out: dict[int, float] = {}
    for text in values or []:
        rev, sep, share = text.partition("=")
        try:
            if not sep or len(text) > 64:
                raise ValueError
            revision, percent = int(rev.strip()), float(share.strip().rstrip("%"))
            if not 1 <= revision <= MAX_INT or not 0 <= percent <= 100:
                raise ValueError
        except ValueError:
            raise BadReference(
                f"invalid {what} {text[:64]!r}: expected REVISION=PERCENT, a revision from 1 to "
                f"{MAX_INT} and a percent from 0 to 100, e.g. 7=10"
            ) from None
        out[revision] = percent
    return out


@app.command()
@handled
def traffic(
    ctx: typer.Context,
    deployment: Annotated[
        str | None, typer.Argument(help="may be left out when there is only one")
    ] = None,
    weight: Annotated[
        list[str] | None, typer.Option(help="REVISION=PERCENT of live traffic, repeatable")
    ] = None,
    shadow: Annotated[
        list[str] | None, typer.Option(help="REVISION=PERCENT of requests copied to it")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="route to quarantined versions anyway")
    ] = False,
    reason: ReasonOpt = None,
) -> None:
    """Split live traffic between release revisions by weight, and mirror shares to shadows."""
    split = service(ctx).set_traffic(
        deployment,
        _revision_shares(weight, "weight"),
        shadows=_revision_shares(shadow, "shadow"),
        force=force,
        reason=reason,
    )
    live = ", ".join(f"revision {rev}: {w:g}%" for rev, w in split.weights)
    mirrored = ", ".join(f"revision {rev}: {w:g}%" for rev, w in split.shadows)
    render.say(f"Traffic: {live}" + (f"; shadow copies: {mirrored}" if mirrored else ""))


data_app = typer.Typer(help="Data a deployment reads, snapshotted before a release changes it.")
app.add_typer(data_app, name="data")


@data_app.command("add")
@handled
def data_add(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="the deployment that reads it")],
    name: Annotated[str, typer.Argument(help="the resource's name, e.g. features")],
    sqlite: Annotated[Path | None, typer.Option(help="an SQLite database file")] = None,
    postgresql: Annotated[
        str | None, typer.Option(help="a PostgreSQL URL; ?schema=NAME picks a schema")
    ] = None,
    directory: Annotated[Path | None, typer.Option(help="a folder of files")] = None,
    policy: Annotated[
        str, typer.Option(help="on rollback: restore (the snapshot), keep, or freeze (refuse)")
    ] = "restore",
    keep_last: Annotated[
        int | None, bounded(1, LIST_MAX, help="keep at most this many snapshots")
    ] = None,
    max_age_days: Annotated[
        float | None, bounded(0.001, 36500, help="delete snapshots older than this")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Declare data DEPLOYMENT reads (or change its policy)."""
    given = [
        (k, v)
        for k, v in (("sqlite", sqlite), ("postgresql", postgresql), ("directory", directory))
        if v is not None
    ]
    if len(given) != 1:
        raise BadReference("give exactly one of --sqlite, --postgresql or --directory")
    driver, location = given[0]
    resource = service(ctx).add_data(
        deployment,
        name,
        driver=driver,
        location=str(location),
        policy=policy,
        keep_last=keep_last,
        max_age_s=max_age_days * 86400 if max_age_days else None,
    )
    if output == Output.json:
        render.emit_json(resource)
    else:
        render.say(
            f"{deployment}: data {resource.name} ({resource.driver} "
            f"{redact(resource.location)}), policy {resource.policy}"
        )


@data_app.command("list")
@handled
def data_list(
    ctx: typer.Context,
    deployment: DeploymentArg = None,
    output: OutputOpt = Output.table,
) -> None:
    """The data resources of DEPLOYMENT."""
    resources = service(ctx).data(deployment)
    if output == Output.json:
        render.emit_json(resources)
        return
    for r in resources:
        render.out.print(render.data_line(r))


@data_app.command("restore")
@handled
def data_restore(
    ctx: typer.Context,
    deployment: Annotated[
        str | None, typer.Argument(help="the deployment (default: every one)")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Finish the restores that rollbacks marked and put back the data of interrupted deploys
    (the controller does it on its own; this is for when no controller runs). Exit 6 when a
    restore fails."""
    outcomes = service(ctx).put_back_due(deployment)
    if output == Output.json:
        render.emit_json(outcomes)
        return
    if not outcomes:
        render.say("no restore was due")
    for outcome in outcomes:
        render.say(f"{outcome['resource']}: {outcome['status']}")


@data_app.command("remove")
@handled
def data_remove(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="the deployment")],
    name: Annotated[str, typer.Argument(help="the resource")],
) -> None:
    """Forget a data resource (its data and snapshots stay where they are)."""
    service(ctx).remove_data(deployment, name)
    render.say(f"{deployment}: data {name} removed")


@app.command()
@handled
def snapshots(
    ctx: typer.Context,
    deployment: DeploymentArg = None,
    output: OutputOpt = Output.table,
) -> None:
    """The snapshots of DEPLOYMENT's data, newest first: checksum, size, status."""
    found = service(ctx).snapshots(deployment)
    if output == Output.json:
        render.emit_json(found)
        return
    render.snapshot_table(found)


@app.command()
@handled
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, bounded(0, 65535, help="port to listen on")] = 8000,
    workers: Annotated[int, bounded(1, 256, help="worker processes")] = 1,
    batch_max_rows: Annotated[
        int, bounded(1, 100_000, help="rows gathered into one predict call")
    ] = 64,
    batch_wait_ms: Annotated[float, bounded(0, 60_000, help="extra wait to gather a batch")] = 0.0,
    max_rows: Annotated[int, bounded(1, 1_000_000, help="rows allowed in one request")] = 1024,
    max_body_mb: Annotated[float, bounded(0.001, 1024, help="largest request body")] = 8.0,
    queue_rows: Annotated[
        int, bounded(1, 10_000_000, help="rows queued per pipeline before 503")
    ] = 2048,
    timeout: Annotated[
        float, bounded(0.001, HOUR_S, help="seconds before a request gets 504")
    ] = 10.0,
    keep_warm: Annotated[
        float, bounded(0, 30 * DAY_S, help="seconds a replaced version stays loaded")
    ] = 600.0,
    body_timeout: Annotated[
        float,
        typer.Option(
            help="seconds a client has to send a request's headers, then its body (408)",
            min=0.1,
            max=3600,
        ),
    ] = 10.0,
    limit_concurrency: Annotated[
        int,
        typer.Option(
            help="open connections per worker before new requests get 503 "
            "(0: half the process's file descriptor limit, at most 1024)",
            min=0,
        ),
    ] = 0,
    log_predictions: Annotated[
        bool, typer.Option(help="keep predictions to join delayed labels")
    ] = True,
    retention_days: Annotated[
        float, bounded(0.001, 3650, help="days measurements and predictions are kept")
    ] = 7.0,
    run_controller: Annotated[
        bool, typer.Option("--controller/--no-controller", help="drive rollouts from here too")
    ] = True,
    labels_per_second: Annotated[
        float,
        typer.Option(
            help="delayed labels taken per second per deployment and worker", min=0.1, max=1e6
        ),
    ] = 200.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve every deployment over KServe V1 and V2 (Ctrl-C lets in-flight requests finish)."""
    import tempfile

    import uvicorn

    from mlops.gateway.protocol import GuardedHttpToolsProtocol
    from mlops.serving import CONFIG_ENV, GatewayConfig

    state: State = ctx.obj
    svc = state.service  # fail fast, and migrate once, before any worker starts
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
    )
    svc.close()
    os.environ[CONFIG_ENV] = config.to_env()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-prometheus-")
    render.err.print(
        f"mlops gateway on http://{host}:{port} ({workers} worker(s)); "
        f"store {redact(svc.settings.store_url)}"
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
    )


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, with the gateway's own lines ("mlops.*") at the same level."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mlops"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def _default_concurrency() -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 2))


@app.command()
@handled
def demo(
    home: Annotated[
        Path | None,
        typer.Option(help="keep the demo's store here (default: a new temporary folder)"),
    ] = None,
) -> None:
    """Train two small models, register, deploy and roll back, and print the timeline."""
    from mlops.demo import run_demo

    run_demo(home)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
