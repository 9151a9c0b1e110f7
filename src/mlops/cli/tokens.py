"""Commands on API tokens: `mlops token create|list|revoke`. They act on the store directly,
so they are for whoever holds the store (the first admin token is made this way)."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops.cli.exits import handled
from mlops.cli.options import Output, OutputOpt, ReasonOpt, render, show
from mlops.cli.state import service
from mlops.core.limits import TOKEN_LIFETIME_MAX_S
from mlops.errors import InvalidInput

app = typer.Typer(help="API tokens: who may call the control API and the data plane.")


@app.command("create")
@handled
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a name for the token, e.g. ci-deployer")],
    role: Annotated[
        str | None, typer.Option(help="viewer, operator or admin (control API)")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="feedback or predict (data plane); repeatable"),
    ] = None,
    deployments: Annotated[
        str, typer.Option(help="a glob of the deployments it may act on, e.g. 'fraud-*'")
    ] = "*",
    expires: Annotated[
        str | None, typer.Option(help="lifetime, e.g. 12h or 30d (at most 366d); none by default")
    ] = None,
    reason: ReasonOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create a token and print its secret, once: only its hash is kept."""
    try:
        lifetime = _lifetime(expires) if expires is not None else None
    except ValueError as exc:
        raise InvalidInput(f"invalid --expires: {exc}") from None
    created = service(ctx).create_token(
        name,
        role=role,
        deployments=deployments,
        scopes=scope or (),
        expires_in_s=lifetime,
        reason=reason,
    )
    show(output, created, render.created_token)


@app.command("list")
@handled
def token_list(ctx: typer.Context, output: OutputOpt = Output.table) -> None:
    """List tokens (never their secrets)."""
    show(output, service(ctx).tokens(), render.tokens_table)


@app.command("revoke")
@handled
def token_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the active token of this name")],
    reason: ReasonOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Revoke a token: every worker stops accepting it."""
    revoked = service(ctx).revoke_token(name, reason=reason)
    show(output, revoked, lambda t: render.say(f"Revoked token {t.name} ({t.key_id})"))


def _lifetime(text: str) -> float:
    from mlops.rollout_spec import parse_duration

    return parse_duration(text, maximum=TOKEN_LIFETIME_MAX_S)
