"""Commands on the data a deployment reads: `mlops data add|list|restore|remove`, and
`mlops snapshots`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlops.cli.exits import handled
from mlops.cli.options import DAY_S, DeploymentArg, Output, OutputOpt, bounded, render, show
from mlops.cli.state import service
from mlops.core.limits import LIST_MAX
from mlops.core.resources import one_location
from mlops.settings import redact

if TYPE_CHECKING:
    from mlops.records import DataResource

app = typer.Typer(help="Data a deployment reads, snapshotted before a release changes it.")


@app.command("add")
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
    driver, location = one_location(
        sqlite=sqlite, postgresql=postgresql, directory=directory, spelled="--"
    )
    resource = service(ctx).add_data(
        deployment,
        name,
        driver=driver,
        location=location,
        policy=policy,
        keep_last=keep_last,
        max_age_s=max_age_days * DAY_S if max_age_days else None,
    )
    show(output, resource, lambda r: render.say(_added(deployment, r)))


def _added(deployment: str, resource: DataResource) -> str:
    return (
        f"{deployment}: data {resource.name} ({resource.driver} "
        f"{redact(resource.location)}), policy {resource.policy}"
    )


@app.command("list")
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


@app.command("restore")
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


@app.command("remove")
@handled
def data_remove(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="the deployment")],
    name: Annotated[str, typer.Argument(help="the resource")],
) -> None:
    """Forget a data resource (its data and snapshots stay where they are)."""
    service(ctx).remove_data(deployment, name)
    render.say(f"{deployment}: data {name} removed")


@handled
def snapshots(
    ctx: typer.Context,
    deployment: DeploymentArg = None,
    output: OutputOpt = Output.table,
) -> None:
    """The snapshots of DEPLOYMENT's data, newest first: checksum, size, status."""
    show(output, service(ctx).snapshots(deployment), render.snapshot_table)
