"""The `mlops` command: the root options, and every command in the order `--help` lists them.
Each command parses, calls the service once, and prints; the commands live in modules by
what they act on (registry, releases, observe, data, tokens, serve, run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mlops.cli import data, observe, registry, releases, run, serve, session, tokens
from mlops.cli.exits import EXIT_INTERRUPTED
from mlops.cli.state import State

app = typer.Typer(
    name="mlops",
    help="Keep every model version, deploy it, and roll back in constant time.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

COMMANDS = (
    registry.register,
    registry.models,
    releases.deploy,
    releases.promote,
    releases.abort,
    releases.pause,
    releases.resume,
    run.controller,
    releases.rollback,
    observe.status,
    observe.history,
    observe.events,
    registry.quarantine,
    releases.traffic,
    data.snapshots,
    serve.serve,
    run.demo,
    session.login,
    session.logout,
)
for command in COMMANDS:
    app.command()(command)
app.add_typer(data.app, name="data")
app.add_typer(tokens.app, name="token")


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
    url: Annotated[
        str | None,
        typer.Option(help="operate a server's store through its API [env: MLOPS_URL]"),
    ] = None,
) -> None:
    ctx.obj = State(home, store, url)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
