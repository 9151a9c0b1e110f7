"""Whether a `notify:` entry is well formed: checked when a spec is deployed, so an entry the
controller could never deliver to is refused then, naming its field. Pure: no I/O."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_URL = 2048
ALERT_KINDS = frozenset({"rolled_back", "promoted", "aborted", "paused", "resumed", "step", "*"})
"""The kinds a `notify:` entry may ask for (`*`: all of them)."""
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook or Slack URL (None when it can): http(s), a host, a
    numeric port, no spaces or control characters, at most `MAX_URL` characters."""
    if len(url) > MAX_URL:
        return f"a notification URL has at most {MAX_URL} characters"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "a notification URL has no spaces or control characters"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}://" if scheme else "no scheme"
        return f"a notification URL must be http:// or https://, not {shown}"
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return "a notification URL's port must be a number from 0 to 65535"
    if not parts.hostname:
        return "a notification URL needs a host: http(s)://HOST/…"
    return None


def secret_env_problem(name: str) -> str | None:
    """Why `name` cannot name an environment variable (None when it can)."""
    if not ENV_NAME.fullmatch(name):
        return "secret_env names an environment variable: letters, digits and _, not first a digit"
    return None


def events_problem(events: list[str]) -> str | None:
    """Why an entry's `events` list names a kind that never comes (None when it does not)."""
    unknown = sorted(set(events) - ALERT_KINDS)
    if unknown:
        return f"unknown alert kind {unknown[0][:64]!r}: one of {', '.join(sorted(ALERT_KINDS))}"
    return None
