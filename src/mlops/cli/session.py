"""Signing in to a server (`mlops login URL`) and out: the server, token and CA bundle that
remote commands use, kept in a file only its owner can read."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mlops.cli.exits import handled
from mlops.cli.options import render
from mlops.errors import Forbidden, InvalidInput


@handled
def login(
    url: Annotated[str, typer.Argument(help="the server, e.g. https://mlops.example.com")],
    ca_bundle: Annotated[
        Path | None, typer.Option(help="PEM file of the CAs that signed the server's certificate")
    ] = None,
    allow_http: Annotated[
        bool,
        typer.Option("--allow-http", help="send the token over plain HTTP to a non-loopback host"),
    ] = False,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="read the token from standard input")
    ] = False,
) -> None:
    """Check a token against URL and save both for later commands (the token comes from
    MLOPS_TOKEN, standard input, or a prompt; never from an argument)."""
    from mlops.remote import credentials
    from mlops.remote.http import Remote
    from mlops.remote.service import RemoteService

    token = _token(token_stdin)
    ca = str(ca_bundle.resolve()) if ca_bundle is not None else None
    remote = Remote(url.rstrip("/"), token, ca, allow_http)
    service = RemoteService(remote)
    try:
        found = len(service.status())
        reach = f"{found} deployment{'s' if found != 1 else ''} visible"
    except Forbidden:
        reach = "a token that may not read deployments"
    finally:
        service.close()
    path = credentials.save(remote)
    render.say(f"signed in to {remote.url} ({reach}); saved in {path}")


def _token(from_stdin: bool) -> str:
    if from_stdin:
        token = sys.stdin.readline().strip()
    else:
        token = os.environ.get("MLOPS_TOKEN") or typer.prompt("token", hide_input=True).strip()
    if not token:
        raise InvalidInput("no token given")
    return token


@handled
def logout() -> None:
    """Forget the saved server and token."""
    from mlops.remote import credentials

    path = credentials.credentials_path()
    if credentials.forget():
        render.say(f"signed out: {path} removed")
    else:
        render.say("not signed in")
