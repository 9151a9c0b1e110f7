"""Settings read from the environment: where the store and the artifacts live."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from mlops.core.refs import is_printable
from mlops.errors import InvalidInput

TRUTHY = {"1", "true", "yes", "on"}


ACTOR_MAX = 128
"""Longest actor name, in characters."""


@dataclass(frozen=True)
class Settings:
    home: Path
    store_url: str
    trust_pickles: bool
    actor: str
    actor_source: str = "os"
    """`os`: the account this process runs as (user@host); `claimed`: MLOPS_ACTOR, a name
    nobody verified."""

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
    claimed = os.environ.get("MLOPS_ACTOR")
    return Settings(
        home=home_path,
        store_url=url,
        trust_pickles=os.environ.get("MLOPS_TRUST", "").strip().lower() in TRUTHY,
        actor=check_actor(claimed, "MLOPS_ACTOR") if claimed else default_actor(),
        actor_source="claimed" if claimed else "os",
    )


def check_actor(name: str, what: str = "actor") -> str:
    """An actor name as given, if it is 1 to ACTOR_MAX printable characters (not all spaces)."""
    if not name.strip() or len(name) > ACTOR_MAX or not is_printable(name):
        shown = name[:ACTOR_MAX].encode("unicode_escape").decode("ascii")
        raise InvalidInput(
            f"invalid {what} '{shown}': 1-{ACTOR_MAX} printable characters, no control characters"
        )
    return name


def redact_text(text: str) -> str:
    """Free text (an error, a log line) with the password of every URL in it hidden."""
    text = _USERINFO.sub(r"\g<head>***@", text)
    return _QUERY_PASSWORD.sub(r"\g<head>***", text)


def redact(url: str) -> str:
    """A store URL fit to print: its password hidden."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    # A text SQLAlchemy does not read as a URL (a path, another scheme): the patterns hide it.
    with contextlib.suppress(ArgumentError):
        url = make_url(url).render_as_string(hide_password=True)
    return redact_text(url)


# `scheme://user:password@`: the password is everything up to the last `@` before the host.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|secret|token)=)[^&\s'\"]*", re.I)
