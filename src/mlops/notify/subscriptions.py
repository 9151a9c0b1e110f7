"""Who hears about what: subscriptions from a spec's `notify:` entries, and their channels.

A channel is the stable name of one receiver, stored in each outbox row: `log`,
`webhook:http://host:port/<digest>` or `slack:https://hooks.slack.com/<digest>`, where the
digest is of the full URL (a Slack URL is a secret, so it is never written out whole).
`notifiers_for` builds the notifier for each channel from the same entries.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from mlops.errors import InvalidInput
from mlops.notify._http import DEFAULT_TIMEOUT_S, where
from mlops.notify.log import LogNotifier
from mlops.notify.notifier import Notifier
from mlops.notify.slack import SlackNotifier
from mlops.notify.webhook import WebhookNotifier
from mlops.rollout_spec import NotifySpec

Target = Literal["webhook", "slack", "log"]
ANY_EVENT = "*"
DEFAULT_EVENTS: frozenset[str] = frozenset({"rolled_back", "promoted", "aborted", "paused"})


@dataclass(frozen=True)
class Subscription:
    """One receiver and the alert kinds it wants (`*` for all), for some or all deployments."""

    target: Target
    url: str | None = None
    secret_env: str | None = None
    """The environment variable holding the webhook's HMAC secret (never the secret itself)."""
    events: frozenset[str] = DEFAULT_EVENTS
    deployments: frozenset[str] | None = None
    """None: every deployment."""

    def __post_init__(self) -> None:
        if (self.target == "log") != (self.url is None):
            raise ValueError("a log subscription takes no URL; webhook and slack need one")
        if self.secret_env is not None and self.target != "webhook":
            raise ValueError("only a webhook is signed, so only it takes secret_env")

    @property
    def channel(self) -> str:
        if self.url is None:
            return "log"
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        return f"{self.target}:{where(self.url)[:200]}/{digest}"

    def wants(self, deployment: str, kind: str) -> bool:
        if self.deployments is not None and deployment not in self.deployments:
            return False
        return ANY_EVENT in self.events or kind in self.events

    @classmethod
    def from_spec(cls, entry: NotifySpec) -> Subscription:
        events = frozenset(entry.events)
        if entry.webhook:
            return cls("webhook", entry.webhook, entry.secret_env, events)
        if entry.secret_env is not None:
            raise InvalidInput("notify: secret_env is for a webhook entry")
        if entry.slack:
            return cls("slack", entry.slack, events=events)
        return cls("log", events=events)


Entry = Subscription | NotifySpec


def _subscription(entry: Entry) -> Subscription:
    return entry if isinstance(entry, Subscription) else Subscription.from_spec(entry)


def subscriptions_for(entries: Iterable[Entry], deployment: str, kind: str) -> list[str]:
    """The channels that want an alert of `kind` about `deployment`: each once, in order."""
    channels: dict[str, None] = {}
    for entry in entries:
        sub = _subscription(entry)
        if sub.wants(deployment, kind):
            channels[sub.channel] = None
    return list(channels)


def notifiers_for(
    entries: Iterable[Entry],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Notifier]:
    """A notifier for each channel of the entries, keyed by channel, for `deliver_due`.

    A webhook's secret is read from `env` (default: the process environment); a named
    variable that is not set is an error rather than a silently unsigned webhook.
    """
    environ = os.environ if env is None else env
    out: dict[str, Notifier] = {}
    secrets: dict[str, str | None] = {}
    for entry in entries:
        sub = _subscription(entry)
        channel = sub.channel
        if channel in out:
            if secrets[channel] != sub.secret_env:
                raise InvalidInput(f"notify: {channel} is given with two different secrets")
            continue
        secrets[channel] = sub.secret_env
        if sub.url is None:
            out[channel] = LogNotifier()
        elif sub.target == "slack":
            out[channel] = SlackNotifier(sub.url, timeout=timeout)
        else:
            secret = None
            if sub.secret_env is not None:
                secret = environ.get(sub.secret_env)
                if not secret:
                    raise InvalidInput(
                        f"notify: the webhook secret variable {sub.secret_env} is not set"
                    )
            out[channel] = WebhookNotifier(sub.url, secret, timeout=timeout)
    return out


def close_notifiers(notifiers: Mapping[str, Notifier]) -> None:
    """Close the notifiers that hold connections (webhook, Slack), e.g. when a controller stops."""
    for notifier in notifiers.values():
        close = getattr(notifier, "close", None)
        if callable(close):
            close()
