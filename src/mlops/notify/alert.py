"""What an alert says (`Alert`), one delivery of it (`Notification`), and its summary line.

An `Alert` is written into the outbox with the state change that caused it; each
subscribed channel gets its own row, and each delivery attempt of a row hands the
notifier a `Notification`: the alert plus the row's id (the idempotency key) and channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SUMMARY_LIMIT = 3000
"""Longest summary line, in characters (Slack's limit for one text block)."""

_HEADS: dict[str, tuple[str, str]] = {
    "rolled_back": (":rotating_light:", "rolled back"),
    "aborted": (":octagonal_sign:", "rollout aborted"),
    "paused": (":double_vertical_bar:", "rollout paused"),
    "resumed": (":arrow_forward:", "rollout resumed"),
    "promoted": (":white_check_mark:", "promoted"),
    "step": (":fast_forward:", "rollout moved on a step"),
}


def utc(at: datetime) -> datetime:
    """`at` in UTC; a naive time is refused (SQLite would compare it as a string)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a timezone-aware time is needed, not {at!r}")
    return at.astimezone(UTC)


@dataclass(frozen=True)
class Alert:
    """Something an operator should hear about: a rollback, a promotion, a pause, an abort."""

    kind: str
    """`rolled_back`, `promoted`, `aborted`, `paused`, `resumed`, `step`, …"""
    deployment: str
    trigger: str
    """`manual`, `analysis`, `health` or `deadline`."""
    reason: str
    at: datetime
    from_revision: int | None = None
    to_revision: int | None = None
    evidence: tuple[str, ...] = ()
    actor: str = "controller"
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "deployment": self.deployment,
            "trigger": self.trigger,
            "actor": self.actor,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "from": self.from_revision,
            "to": self.to_revision,
            "at": utc(self.at).isoformat(),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(
            kind=str(data["kind"]),
            deployment=str(data["deployment"]),
            trigger=str(data["trigger"]),
            actor=str(data.get("actor", "controller")),
            reason=str(data["reason"]),
            evidence=tuple(str(e) for e in data.get("evidence", ())),
            from_revision=data.get("from"),
            to_revision=data.get("to"),
            at=datetime.fromisoformat(data["at"]),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class Notification:
    """One delivery of an alert to one channel. `id` is the outbox row: the same on a resend."""

    id: int
    event_id: int
    channel: str
    alert: Alert

    def to_dict(self) -> dict[str, Any]:
        """The JSON a webhook receives."""
        return {"id": self.id, "event_id": self.event_id, **self.alert.to_dict()}


def summarize(alert: Alert) -> str:
    """One readable line.

    For example `:rotating_light: fraud-api rolled back to revision 4 (analysis): error rate …`.
    """
    emoji, verb = _HEADS.get(alert.kind, (":information_source:", alert.kind.replace("_", " ")))
    head = f"{emoji} {alert.deployment} {verb}"
    if alert.to_revision is not None and alert.kind in ("rolled_back", "aborted"):
        head += f" to revision {alert.to_revision}"
    elif alert.to_revision is not None and alert.kind == "promoted":
        head += f" revision {alert.to_revision}"
    text = "; ".join(part for part in (alert.reason, *alert.evidence) if part)
    line = f"{head} ({alert.trigger})" + (f": {text}" if text else "")
    return line if len(line) <= SUMMARY_LIMIT else line[: SUMMARY_LIMIT - 1] + "…"
