"""Commands that read what happened and what serves now: status (and --watch), history, events."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from mlops.cli.exits import handled
from mlops.cli.options import DeploymentArg, Output, OutputOpt, bounded, render, show
from mlops.cli.state import service
from mlops.core.limits import HISTORY_LIMIT, LIST_MAX
from mlops.core.refs import MAX_INT
from mlops.errors import EXIT_OK, EXIT_ROLLED_BACK, BadReference

if TYPE_CHECKING:
    from mlops.operations import Operations
    from mlops.records import DeploymentStatus

WATCH_POLL_S = 0.5


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


def _watch(svc: Operations, deployment: str | None, output: Output) -> int:
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
                line = _watch_text(current, output)
                if line != shown:
                    print(line, flush=True)  # watch_line is safe; JSON escapes
                    shown = line
            if current.rollout is None:
                break
            time.sleep(WATCH_POLL_S)
    finally:
        if live is not None:
            live.stop()
    if live is None and output == Output.table:
        render.out.print(render.watch_view(current, svc.measurements(name, window_s=60)))
    # The newest release tells how the last rollout ended, even one that ended before the
    # watch began (`mlops deploy … && mlops status --watch` in a pipeline).
    newest = svc.history(name, limit=1)
    ended_badly = bool(newest) and newest[0].status in ("rolled_back", "aborted")
    return EXIT_ROLLED_BACK if ended_badly else EXIT_OK


def _watch_text(current: DeploymentStatus, output: Output) -> str:
    if output == Output.json:
        return json.dumps(current.to_dict())
    return render.watch_line(current)


@handled
def history(
    ctx: typer.Context,
    deployment: DeploymentArg = None,
    limit: Annotated[int, bounded(1, LIST_MAX, help="at most this many releases")] = HISTORY_LIMIT,
    before: Annotated[
        int | None, bounded(1, MAX_INT, help="only revisions below this one (paging)")
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """The releases of DEPLOYMENT, newest first, each with who made it, how and why."""
    records = service(ctx).history(deployment, limit=limit, before=before)
    show(output, records, render.history_table)


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
    show(output, found, render.events_table)
