"""Who hears about what: subscriptions from a spec's `notify:` entries, and their channels.

A channel is the stable name of one receiver, stored in each outbox row: `log`,
`webhook:http://host:port/<digest>` or `slack:https://hooks.slack.com/<digest>`, where the
digest is of the full URL (a Slack URL is a secret, so it is never written out whole).
`notifiers_for` builds the notifier for each channel from the same entries.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from mlops.errors import InvalidInput
from mlops.notify._http import DEFAULT_TIMEOUT_S, where
from mlops.notify.alert import Notification
from mlops.notify.log import LogNotifier
from mlops.notify.notifier import DeliveryFailed, Notifier
from mlops.notify.slack import SlackNotifier
from mlops.notify.webhook import WebhookNotifier

if TYPE_CHECKING:
    from mlops.rollout_spec import NotifySpec

log = logging.getLogger("mlops.notify")

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
        # A webhook signed with another secret is another receiver: its own channel.
        key = self.url if self.secret_env is None else f"{self.url}\0{self.secret_env}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
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


Entry: TypeAlias = "Subscription | NotifySpec"


def _subscription(entry: Entry) -> Subscription:
    return entry if isinstance(entry, Subscription) else Subscription.from_spec(entry)


def channel_of(entry: Entry) -> str | None:
    """The channel of an entry; None for one that names no receiver (logged)."""
    try:
        return _subscription(entry).channel
    except (InvalidInput, ValueError) as exc:
        log.warning("a notify entry is skipped: %s", exc)
        return None


def subscriptions_for(entries: Iterable[Entry], deployment: str, kind: str) -> list[str]:
    """The channels that want an alert of `kind` about `deployment`: each once, in order.
    An entry that names no receiver is skipped (specs are checked at deploy)."""
    channels: dict[str, None] = {}
    for entry in entries:
        try:
            sub = _subscription(entry)
        except (InvalidInput, ValueError) as exc:
            log.warning("a notify entry is skipped: %s", exc)
            continue
        if sub.wants(deployment, kind):
            channels[sub.channel] = None
    return list(channels)


class UnavailableNotifier:
    """Stands for a receiver that cannot be reached from this host (its secret is not set
    here, its URL is refused): each send fails with the reason, so its alerts wait, retried
    and visible, while every other channel delivers."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def send(self, message: Notification) -> None:
        raise DeliveryFailed(self.reason)


def notifiers_for(
    entries: Iterable[Entry],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Notifier]:
    """A notifier for each channel of the entries, keyed by channel, for `deliver_due`.

    A webhook's secret is read from `env` (default: the process environment). A channel that
    cannot be built here (its secret variable is not set, rather than a silently unsigned
    webhook; its URL is refused) gets an `UnavailableNotifier`: it fails alone, each try,
    and never stops the others.
    """
    environ = os.environ if env is None else env
    out: dict[str, Notifier] = {}
    for entry in entries:
        try:
            sub = _subscription(entry)
        except (InvalidInput, ValueError) as exc:
            log.warning("a notify entry is skipped: %s", exc)
            continue
        channel = sub.channel
        if channel in out:
            continue
        try:
            out[channel] = _notifier(sub, environ, timeout)
        except InvalidInput as exc:
            out[channel] = UnavailableNotifier(f"cannot deliver to {channel}: {exc}")
    return out


def _notifier(sub: Subscription, environ: Mapping[str, str], timeout: float) -> Notifier:
    if sub.url is None:
        return LogNotifier()
    if sub.target == "slack":
        return SlackNotifier(sub.url, timeout=timeout)
    secret = None
    if sub.secret_env is not None:
        secret = environ.get(sub.secret_env)
        if not secret:
            raise InvalidInput(
                f"the webhook secret variable {sub.secret_env} is not set on this host"
            )
    return WebhookNotifier(sub.url, secret, timeout=timeout)


def close_notifiers(notifiers: Mapping[str, Notifier]) -> None:
    """Close the notifiers that hold connections (webhook, Slack), e.g. when a controller stops."""
    for notifier in notifiers.values():
        close = getattr(notifier, "close", None)
        if callable(close):
            close()
