"""What the root command hands every command: where the store is, and the service on it."""

from __future__ import annotations

from pathlib import Path

import typer

from mlops.service import Service
from mlops.settings import load_settings


class State:
    """The root options; the service is opened at its first use, once per run."""

    def __init__(self, home: Path | None, store: str | None) -> None:
        self.home = home
        self.store = store
        self._service: Service | None = None

    @property
    def service(self) -> Service:
        if self._service is None:
            self._service = Service(load_settings(home=self.home, store_url=self.store))
        return self._service


def service(ctx: typer.Context) -> Service:
    state: State = ctx.obj
    return state.service
