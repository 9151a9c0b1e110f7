"""Printing records as Rich tables for people, or as JSON for scripts."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mlops.cli.options import HasDict
from mlops.core.measure import Measurements
from mlops.core.refs import ComponentRef
from mlops.records import (
    CreatedToken,
    DataResource,
    DeploymentStatus,
    Event,
    ModelSummary,
    ModelVersion,
    ReleaseRecord,
    ReleaseResult,
    SnapshotRecord,
    TokenInfo,
)
from mlops.settings import redact_text

# No markup, no emoji codes: names, reasons and signatures hold brackets ("[float64]") and
# colons that must print as they are.
out = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
"""Control characters (C0, DEL, C1), bidirectional and zero-width marks, line separators."""


def safe(value: object) -> str:
    """Text fit for a terminal: every control or invisible formatting character shown as its
    escape (`\\x1b`, `\\n`, `\\u202e`), and every URL's password hidden. Each line and cell
    printed from stored or user text goes through here; `-o json` does not (JSON escapes)."""
    text = redact_text(str(value))
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def say(text: object, *, to: Console | None = None) -> None:
    """Print one line of text, made safe."""
    (to or out).print(safe(text))


def actor_text(name: str, source: str | None) -> str:
    """An actor as a reader should take it: a claimed name (MLOPS_ACTOR) says so."""
    return f"{name} (claimed)" if source == "claimed" else name


class SafeFormatter(logging.Formatter):
    """A log formatter whose messages (alerts, reasons, names) are made safe (`safe`)."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.msg, record.args = safe(record.getMessage()), None
        return super().format(record)


def log_safely(logger: str = "mlops") -> None:
    """Send `logger`'s warnings to stderr through SafeFormatter (once)."""
    target = logging.getLogger(logger)
    if not any(isinstance(h.formatter, SafeFormatter) for h in target.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(SafeFormatter("%(message)s"))
        target.addHandler(handler)
        target.propagate = False


class SafeTable(Table):
    """A Rich table whose text cells are made safe (`safe`) as they are added."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(safe(r) if isinstance(r, str) else r for r in renderables), **kwargs)


def emit_json(value: HasDict | Sequence[HasDict] | Sequence[dict[str, Any]]) -> None:
    if isinstance(value, Sequence):
        data: Any = [item if isinstance(item, dict) else item.to_dict() for item in value]
    else:
        data = value.to_dict()
    print(json.dumps(data, indent=2, default=str))


def when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def components_text(components: dict[str, ComponentRef]) -> str:
    return ", ".join(f"{name}={ref}" for name, ref in sorted(components.items())) or "-"


def models_table(models: Sequence[ModelSummary]) -> None:
    if not models:
        out.print("No models registered yet. Add one with: mlops register MODEL PATH")
        return
    table = SafeTable("MODEL", "LATEST", "VERSIONS", "QUARANTINED", "CREATED")
    for m in models:
        table.add_row(
            m.name, str(m.latest_version), str(m.versions), str(m.quarantined), when(m.created_at)
        )
    out.print(table)


def versions_table(model: str, versions: Sequence[ModelVersion]) -> None:
    table = SafeTable(
        "VERSION", "FLAVOR", "STATUS", "SIGNATURE", "SHA256", "TAGS", "CREATED", title=model
    )
    from mlops.core.signature import Signature

    for v in versions:
        status: str | Text = (
            Text.assemble(("quarantined", "red"), safe(f": {v.quarantine_reason}"))
            if v.quarantined
            else v.status
        )
        tags = ", ".join(f"{k}={val}" for k, val in sorted(v.tags.items())) or "-"
        table.add_row(
            str(v.version),
            v.flavor,
            status,
            Signature.from_dict(v.signature).describe(),
            v.artifact_sha256[:12],
            tags,
            when(v.created_at),
        )
    out.print(table)


def registered(version: ModelVersion) -> None:
    from mlops.core.signature import Signature

    out.print(
        Text.assemble(
            "Registered ",
            (safe(version.ref), "bold"),
            safe(
                f" ({version.flavor}; {Signature.from_dict(version.signature).describe()}; "
                f"sha256 {version.artifact_sha256[:12]})"
            ),
        )
    )


def release_result(result: ReleaseResult) -> None:
    if not result.changed:
        say(
            f"{result.deployment} already serves {components_text(result.components)} "
            f"(revision {result.revision}); nothing to do"
        )
        return
    changes = "; ".join(
        f"{c['component']}: {c['from'] or '-'} -> {c['to'] or '-'}" for c in result.changes
    )
    verb = {"deploy": "Deployed", "rollout": "Started rolling out", "abort": "Aborted"}.get(
        result.action, "Rolled back"
    )
    if result.dry_run:
        verb = "Dry run, nothing changed: would have " + verb[0].lower() + verb[1:]
    source = f", restoring revision {result.source_revision}" if result.source_revision else ""
    if source and len(result.changes) == 1 and len(result.components) > 1:
        source = (
            f", restoring {result.changes[0]['component']} from revision {result.source_revision}"
        )
    out.print(
        Text.assemble(
            f"{verb} ",
            (safe(result.deployment), "bold"),
            safe(f" to revision {result.revision}{source} ({changes})"),
        )
    )
    for outcome in result.data:
        if outcome["status"] == "would restore":
            what = outcome.get("discards_summary") or outcome.get("problem")
            say(
                f"  data {outcome['resource']}: would restore snapshot {outcome['snapshot']}, "
                f"discarding the writes since it: {what}"
            )
        elif outcome["status"] == "restored":
            say(
                f"  data {outcome['resource']}: restored from snapshot {outcome['snapshot']} "
                f"in {outcome['seconds']:g} s, checksum verified; "
                f"{outcome['writes_discarded']} writes since the snapshot undone "
                f"({outcome['changes']})"
            )
        else:
            say(f"  data {outcome['resource']}: {outcome['status']}")


def snapshot_table(found: Sequence[SnapshotRecord]) -> None:
    expiring = any(snap.expires_at for snap in found)
    columns = ["ID", "RESOURCE", "BEFORE REV", "DRIVER", "SIZE", "CHECKSUM", "STATUS", "TAKEN"]
    table = SafeTable(*columns, *(["EXPIRES"] if expiring else []))
    for snap in found:
        restore = snap.details.get("restore") or {}
        status = snap.status
        if restore.get("writes_discarded"):
            status += f", {restore['writes_discarded']} writes undone"
        table.add_row(
            str(snap.id),
            snap.resource,
            str(snap.revision),
            snap.driver,
            f"{snap.size_bytes / 1e6:.1f} MB",
            snap.checksum[:8],
            status,
            when(snap.created_at),
            *([when(snap.expires_at)] if expiring else []),
        )
    out.print(table)


def status_table(statuses: Sequence[DeploymentStatus]) -> None:
    if not statuses:
        say("No deployments yet. Create one with: mlops deploy DEPLOYMENT --model MODEL:VERSION")
        return
    table = SafeTable("DEPLOYMENT", "REVISION", "PHASE", "COMPONENTS", "UPDATED")
    for s in statuses:
        components = Text(safe(components_text(s.components)))
        if s.quarantined:
            components.append(safe(f"  (quarantined: {', '.join(s.quarantined)})"), "red")
        table.add_row(s.deployment, str(s.revision or "-"), s.phase, components, when(s.updated_at))
    out.print(table)


def history_table(records: Sequence[ReleaseRecord]) -> None:
    table = SafeTable(
        "REV", "STATUS", "COMPONENTS", "CHANGED", "ACTION", "TRIGGER", "ACTOR", "REASON", "AT"
    )
    for r in records:
        e = r.event
        action = e.action if e else "-"
        if e and e.action == "rollback" and e.details.get("component"):
            action += f" {e.details['component']} alone"
        if e and e.action == "rollback" and r.source_revision:
            action += f" to {r.source_revision}"
        changed = Text(
            "\n".join(
                safe(f"{c['component']}: {c['from'] or '-'} → {c['to'] or '-'}") for c in r.changes
            )
            or "-"
        )
        table.add_row(
            str(r.revision),
            r.status,
            components_text(r.components),
            changed,
            action,
            e.trigger if e else "-",
            actor_text(e.actor, e.actor_source) if e else "-",
            (e.reason if e else None) or "-",
            when(r.created_at),
        )
    out.print(table)


def watch_line(status: DeploymentStatus) -> str:
    """The watch view in one line, for logs (made safe)."""
    return safe(_watch_line(status))


def _watch_line(status: DeploymentStatus) -> str:
    rollout = status.rollout
    if rollout is None:
        return (
            f"{status.deployment}: stable revision {status.revision} "
            f"({components_text(status.components)}), phase {status.phase}"
        )
    mirror = f", mirror {rollout['mirror']:g}%" if rollout["mirror"] else ""
    return (
        f"{status.deployment}: {rollout['strategy']} of revision {rollout['candidate_revision']}, "
        f"step {rollout['step']}/{rollout['steps']}, candidate {rollout['weight']:g}%{mirror}, "
        f"{rollout['phase']}, verdict {rollout['outcome']}"
    )


def watch_view(status: DeploymentStatus, measured: Sequence[Measurements]) -> Group:
    """One deployment, live: what serves, the rollout's step and verdict, per-revision figures."""
    lines: list[Any] = [
        Text.assemble(
            (safe(status.deployment), "bold"),
            safe(f"  stable revision {status.revision} ({components_text(status.components)})"),
            "  phase ",
            (safe(status.phase), "bold"),
        )
    ]
    rollout = status.rollout
    if rollout:
        bar = ProgressBar(total=rollout["steps"], completed=rollout["step"], width=30)
        weights = f"candidate {rollout['weight']:g}%"
        if rollout["mirror"]:
            weights += f", mirror {rollout['mirror']:g}%"
        head = SafeTable.grid(padding=(0, 1))
        head.add_row(
            f"{rollout['strategy']} of revision {rollout['candidate_revision']}",
            bar,
            f"step {rollout['step']}/{rollout['steps']}",
            weights,
            f"verdict: {rollout['outcome']}",
        )
        lines.append(head)
        for reason in rollout["reasons"][:4]:
            lines.append(Text(safe(f"  {reason}"), style="dim"))
    table = SafeTable(
        "REVISION",
        "ROLE",
        "REQUESTS",
        "ERRORS",
        "P50 MS",
        "P99 MS",
        "ACCURACY",
        "AGREEMENT",
        title="last 60 s",
    )
    for m in measured:
        p50, p99 = m.latency_ms(0.5), m.latency_ms(0.99)
        table.add_row(
            str(m.revision),
            m.role,
            str(m.requests),
            f"{m.error_rate:.2%}" if m.error_rate is not None else "-",
            f"{p50:.1f}" if p50 is not None else "-",
            f"{p99:.1f}" if p99 is not None else "-",
            f"{m.accuracy:.1%}" if m.accuracy is not None else "-",
            f"{m.agreement:.1%}" if m.agreement is not None else "-",
        )
    lines.append(table)
    return Group(*lines)


def events_table(events: Sequence[Event]) -> None:
    columns = ("ID", "AT", "DEPLOYMENT", "ACTION", "TRIGGER", "ACTOR", "FROM", "TO", "REASON")
    table = SafeTable(*columns)
    for e in events:
        table.add_row(
            str(e.id),
            when(e.at),
            e.deployment or "-",
            e.action,
            e.trigger,
            actor_text(e.actor, e.actor_source),
            str(e.from_revision) if e.from_revision is not None else "-",
            str(e.to_revision) if e.to_revision is not None else "-",
            e.reason or "-",
        )
    out.print(table)


def data_line(resource: DataResource) -> str:
    fields = (resource.name, resource.driver, resource.policy, resource.location)
    return "\t".join(safe(f) for f in fields)


def _grants(token: TokenInfo) -> str:
    parts = [token.role or "no role", *(f"scope {s}" for s in token.scopes)]
    return f"{', '.join(parts)} on {token.deployments}"


def created_token(created: CreatedToken) -> None:
    token = created.token
    expiry = f", expires {when(token.expires_at)}" if token.expires_at else ", never expires"
    out.print(f"Created token {safe(token.name)}: {_grants(token)}{expiry}")
    out.print("Its secret, shown this once (only its hash is kept):")
    out.print(created.secret)


def tokens_table(tokens: Sequence[TokenInfo]) -> None:
    if not tokens:
        out.print("No tokens yet. Create one with: mlops token create NAME --role viewer")
        return
    table = SafeTable("NAME", "KEY", "GRANTS", "STATUS", "CREATED", "BY", "EXPIRES")
    for t in tokens:
        table.add_row(
            t.name,
            t.key_id,
            _grants(t),
            t.status,
            when(t.created_at),
            t.created_by,
            when(t.expires_at),
        )
    out.print(table)
