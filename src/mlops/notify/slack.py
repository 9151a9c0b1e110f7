"""`SlackNotifier`: a readable message to a Slack incoming webhook (`{"text", "blocks"}`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlops.notify._http import DEFAULT_TIMEOUT_S, HttpNotifier, post
from mlops.notify.alert import Notification, summarize

if TYPE_CHECKING:
    import httpx

FIELD_LIMIT = 2000
"""Longest text in one field or evidence block (Slack allows 2,000 and 3,000)."""


def _escape(text: str) -> str:
    """Slack's mrkdwn control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int = FIELD_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_message(message: Notification) -> dict[str, Any]:
    """The incoming-webhook payload: a summary line as `text` and as blocks with the facts."""
    alert = message.alert
    summary = summarize(alert)
    revisions = " → ".join(
        str(r) if r is not None else "none" for r in (alert.from_revision, alert.to_revision)
    )
    fields = [
        ("Deployment", alert.deployment),
        ("Revision", revisions),
        ("Trigger", alert.trigger),
        ("Actor", alert.actor),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(_escape(summary))}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _clip(f"*{name}*\n{_escape(value)}")}
                for name, value in fields
            ],
        },
    ]
    if alert.evidence:
        listed = "\n".join(f"• {_escape(item)}" for item in alert.evidence)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"*Evidence*\n{listed}")}}
        )
    context = f"event {message.event_id} · delivery {message.id} · {alert.at.isoformat()}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": summary, "blocks": blocks}


class SlackNotifier(HttpNotifier):
    """Posts to a Slack incoming-webhook URL (which is itself a secret: it is never logged)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, timeout=timeout, transport=transport)

    def send(self, message: Notification) -> None:
        body = json.dumps(slack_message(message), ensure_ascii=False).encode()
        post(self._client, self.url, body, {})
