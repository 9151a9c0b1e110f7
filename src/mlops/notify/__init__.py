"""Notifications: alerts about rollouts, delivered to webhooks, Slack and the log.

    Alert               what happened (kind, deployment, trigger, reason, evidence, revisions)
    Notification        one delivery of an alert to one channel; `id` is the idempotency key
    Notifier            the plug point: `send(message) -> None`, or raise `DeliveryFailed`
    ├── WebhookNotifier JSON POST, HMAC-SHA256 signed (`X-Mlops-Signature`)
    ├── SlackNotifier   Slack incoming webhook (`text` and `blocks`)
    ├── LogNotifier     one line on the `mlops.alerts` logger
    ├── UnavailableNotifier  a receiver this host cannot reach (its secret unset): fails alone
    └── RecordingNotifier  a fake for tests
    Subscription        a receiver and the alert kinds it wants; `subscriptions_for`,
                        `notifiers_for` turn a spec's `notify:` entries into channels and notifiers
    enqueue, deliver_due  the outbox (see `mlops.notify.outbox`): queued in the state change's
                        transaction, delivered afterwards with retries

See docs/alerts.md for the payload, the signature and the delivery guarantee.
"""

from mlops.notify.alert import Alert, Notification, summarize
from mlops.notify.log import LogNotifier
from mlops.notify.notifier import DeliveryFailed, Notifier
from mlops.notify.outbox import (
    DeliveryReport,
    OutboxEntry,
    RetryPolicy,
    deliver_due,
    enqueue,
    prune_delivered,
    undelivered,
)
from mlops.notify.recording import RecordingNotifier
from mlops.notify.slack import SlackNotifier, slack_message
from mlops.notify.subscriptions import (
    Subscription,
    UnavailableNotifier,
    channel_of,
    close_notifiers,
    notifiers_for,
    subscriptions_for,
)
from mlops.notify.webhook import WebhookNotifier, sign, verify_signature

__all__ = [
    "Alert",
    "DeliveryFailed",
    "DeliveryReport",
    "LogNotifier",
    "Notification",
    "Notifier",
    "OutboxEntry",
    "RecordingNotifier",
    "RetryPolicy",
    "SlackNotifier",
    "Subscription",
    "UnavailableNotifier",
    "WebhookNotifier",
    "channel_of",
    "close_notifiers",
    "deliver_due",
    "enqueue",
    "notifiers_for",
    "prune_delivered",
    "sign",
    "slack_message",
    "subscriptions_for",
    "summarize",
    "undelivered",
    "verify_signature",
]
