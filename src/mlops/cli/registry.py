"""Commands on the model registry: register a version, list models and versions, quarantine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlops.cli.exits import handled
from mlops.cli.options import Output, OutputOpt, ReasonOpt, bounded, render, show
from mlops.cli.state import service
from mlops.core.limits import LIST_MAX
from mlops.core.refs import parse_ref, parse_tag


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
    show(output, version, render.registered)


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
        show(output, svc.models(), render.models_table)
        return
    versions = svc.versions(model, limit=limit)
    show(output, versions, lambda found: render.versions_table(model, found))


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
