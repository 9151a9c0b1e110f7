"""Commands that change what a deployment serves: deploy, rollback, traffic, and the requests
the controller applies to a rollout (promote, abort, pause, resume)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlops.cli.exits import handled
from mlops.cli.options import DeploymentArg, Output, OutputOpt, ReasonOpt, bounded, render, show
from mlops.cli.state import service
from mlops.core.refs import MAX_INT, ComponentRef, parse_component, parse_ref
from mlops.errors import BadReference

if TYPE_CHECKING:
    from mlops.operations import Operations
    from mlops.records import ReleaseResult

ComponentsOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="NAME=MODEL:VERSION, repeatable; NAME is lookup, preprocessor…, model or "
        "postprocessor…"
    ),
]
StrategyOpt = Annotated[
    str | None,
    typer.Option(help="direct (default), canary, linear, bluegreen or shadow"),
]
SpecOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="rollout spec (YAML): steps, analysis, alerts"),
]
MigrationOpt = Annotated[
    str | None,
    typer.Option(help="data migration: an .sql file, or a Python callable module:function"),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="say what would change, and change nothing")
]
DataOpt = Annotated[
    list[str] | None,
    typer.Option(help="data resource NAME the release changes, repeatable (default: all)"),
]


@handled
def deploy(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="deployment name, e.g. fraud-api")],
    model: Annotated[
        str | None, typer.Option(help="MODEL:VERSION of the primary component")
    ] = None,
    component: ComponentsOpt = None,
    remove: Annotated[
        list[str] | None, typer.Option(help="drop component NAME, repeatable")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="deploy a quarantined version, or components that do not fit, anyway"
        ),
    ] = False,
    strategy: StrategyOpt = None,
    file: SpecOpt = None,
    migration: MigrationOpt = None,
    data: DataOpt = None,
    reason: ReasonOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Output.table,
) -> None:
    """Write the next release of DEPLOYMENT with these components, and serve it: at once
    (direct), or step by step under analysis (a rollout the controller drives). With
    --migration, the data it changes is snapshotted first."""
    components: dict[str, ComponentRef] = dict(parse_component(text) for text in component or [])
    result = _deploy(
        service(ctx),
        deployment,
        file,
        strategy,
        model=parse_ref(model) if model else None,
        components=components,
        remove=frozenset(remove or []),
        force=force,
        reason=reason,
        migration=migration,
        data=tuple(data or ()),
        dry_run=dry_run,
    )
    show(output, result, render.release_result)


def _deploy(
    svc: Operations, deployment: str, file: Path | None, strategy: str | None, **options: Any
) -> ReleaseResult:
    """A server reads the spec's text itself; a local store gets it checked here."""
    from mlops.remote.service import RemoteService, SpecText

    if isinstance(svc, RemoteService):
        return svc.deploy(deployment, rollout=SpecText.read(file, strategy), **options)
    from mlops.rollout_spec import load_spec, read_spec_file

    spec = (
        read_spec_file(file, strategy=strategy)
        if file
        else load_spec(strategy=strategy or "direct")
    )
    return svc.deploy(deployment, rollout=spec, **options)


@handled
def rollback(
    ctx: typer.Context,
    deployment: DeploymentArg = None,
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
    dry_run: DryRunOpt = False,
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
        dry_run=dry_run,
    )
    show(output, result, render.release_result)


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


@handled
def traffic(
    ctx: typer.Context,
    deployment: DeploymentArg = None,
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


def _request(ctx: typer.Context, deployment: str | None, kind: str, reason: str | None) -> None:
    """Write a request the controller applies to the rollout at its next tick."""
    command_id = service(ctx).request(deployment, kind, reason=reason)
    render.say(
        f"Requested {kind.replace('_', ' ')} (command {command_id}); "
        "the controller applies it at its next tick"
    )


@handled
def promote(
    ctx: typer.Context,
    deployment: DeploymentArg = None,
    full: Annotated[bool, typer.Option("--full", help="skip the remaining steps")] = False,
    reason: ReasonOpt = None,
) -> None:
    """Finish the current rollout step now (or, with --full, promote the candidate)."""
    _request(ctx, deployment, "promote_full" if full else "promote", reason)


@handled
def abort(ctx: typer.Context, deployment: DeploymentArg = None, reason: ReasonOpt = None) -> None:
    """Stop the rollout: all traffic back to stable; the candidate is not quarantined."""
    _request(ctx, deployment, "abort", reason)


@handled
def pause(ctx: typer.Context, deployment: DeploymentArg = None, reason: ReasonOpt = None) -> None:
    """Hold the rollout at its current weights (analysis keeps watching)."""
    _request(ctx, deployment, "pause", reason)


@handled
def resume(ctx: typer.Context, deployment: DeploymentArg = None, reason: ReasonOpt = None) -> None:
    """Resume a paused rollout."""
    _request(ctx, deployment, "resume", reason)
