"""Settings read from the environment: where the store and the artifacts live."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from pathlib import Path

TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    home: Path
    store_url: str
    trust_pickles: bool
    actor: str

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def load_settings(home: str | Path | None = None, store_url: str | None = None) -> Settings:
    """Settings from the arguments, else from MLOPS_HOME, MLOPS_STORE, MLOPS_TRUST, MLOPS_ACTOR."""
    home_path = Path(home or os.environ.get("MLOPS_HOME") or Path.home() / ".mlops").expanduser()
    url = store_url or os.environ.get("MLOPS_STORE") or f"sqlite:///{home_path / 'mlops.db'}"
    return Settings(
        home=home_path,
        store_url=url,
        trust_pickles=os.environ.get("MLOPS_TRUST", "").strip().lower() in TRUTHY,
        actor=os.environ.get("MLOPS_ACTOR") or default_actor(),
    )


def redact(url: str) -> str:
    """A store URL fit to print: its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
