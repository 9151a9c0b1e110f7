"""What the root command hands every command: where the store is — a local one, or a server's
control API — and the service on it, opened at its first use, once per run.

The store is remote with `--url` or `MLOPS_URL`; local with `--store`/`--home` or their
environment variables; else remote when `mlops login` saved a server; else the local default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlops.errors import InvalidInput

if TYPE_CHECKING:
    from mlops.operations import Operations
    from mlops.remote.http import Remote
    from mlops.service import Service
    from mlops.settings import Settings


class State:
    def __init__(self, home: Path | None, store: str | None, url: str | None = None) -> None:
        self.home = home
        self.store = store
        self.url = url
        self._service: Operations | None = None

    @property
    def service(self) -> Operations:
        if self._service is None:
            remote = self._remote()
            if remote is not None:
                from mlops.remote.service import RemoteService

                self._service = RemoteService(remote)
            else:
                self._service = self.local
        return self._service

    @property
    def local(self) -> Service:
        from mlops.service import Service

        return Service(self.settings)

    @property
    def settings(self) -> Settings:
        """Where the local store and artifacts are."""
        from mlops.settings import load_settings

        return load_settings(home=self.home, store_url=self.store)

    def _remote(self) -> Remote | None:
        named_remote = self.url or os.environ.get("MLOPS_URL")
        named_local = self.home or self.store or os.environ.get("MLOPS_STORE")
        if not named_remote and (named_local or os.environ.get("MLOPS_HOME")):
            return None
        from mlops.remote import credentials

        return credentials.from_environment(self.url) if named_remote else credentials.load_saved()


def service(ctx: typer.Context) -> Operations:
    state: State = ctx.obj
    return state.service


def local_service(ctx: typer.Context, command: str) -> Service:
    """The service on a local store, for a command that runs on this machine."""
    local_settings(ctx, command)
    state: State = ctx.obj
    return state.local


def local_settings(ctx: typer.Context, command: str) -> Settings:
    """Where the local store is, for a command that runs on this machine and opens it itself."""
    state: State = ctx.obj
    if state.url:
        raise InvalidInput(
            f"`mlops {command}` runs on this machine, on a store it opens: it takes --store or "
            "--home, not --url"
        )
    return state.settings
