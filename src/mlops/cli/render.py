"""Printing records as Rich tables for people, or as JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mlops.core.measure import Measurements
from mlops.core.refs import ComponentRef
from mlops.records import (
    DeploymentStatus,
    ModelSummary,
    ModelVersion,
    ReleaseRecord,
    ReleaseResult,
    SnapshotRecord,
)

# No markup: names, reasons and signatures hold brackets ("[float64]") that must print as is.
out = Console(soft_wrap=True, highlight=False, markup=False)
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False)


class HasDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


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
    table = Table("MODEL", "LATEST", "VERSIONS", "QUARANTINED", "CREATED")
    for m in models:
        table.add_row(
            m.name, str(m.latest_version), str(m.versions), str(m.quarantined), when(m.created_at)
        )
    out.print(table)


def versions_table(model: str, versions: Sequence[ModelVersion]) -> None:
    table = Table(
        "VERSION", "FLAVOR", "STATUS", "SIGNATURE", "SHA256", "TAGS", "CREATED", title=model
    )
    from mlops.core.signature import Signature

    for v in versions:
        status: str | Text = (
            Text.assemble(("quarantined", "red"), f": {v.quarantine_reason}")
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
            (str(version.ref), "bold"),
            f" ({version.flavor}; {Signature.from_dict(version.signature).describe()}; "
            f"sha256 {version.artifact_sha256[:12]})",
        )
    )


def release_result(result: ReleaseResult) -> None:
    if not result.changed:
        out.print(
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
    source = f", restoring revision {result.source_revision}" if result.source_revision else ""
    if source and len(result.changes) == 1 and len(result.components) > 1:
        source = (
            f", restoring {result.changes[0]['component']} from revision {result.source_revision}"
        )
    out.print(
        Text.assemble(
            f"{verb} ",
            (result.deployment, "bold"),
            f" to revision {result.revision}{source} ({changes})",
        )
    )
    for outcome in result.data:
        if outcome["status"] == "restored":
            out.print(
                f"  data {outcome['resource']}: restored from snapshot {outcome['snapshot']} "
                f"in {outcome['seconds']:g} s, checksum verified; "
                f"{outcome['writes_discarded']} writes since the snapshot undone "
                f"({outcome['changes']})"
            )
        else:
            out.print(f"  data {outcome['resource']}: {outcome['status']}")


def snapshot_table(found: Sequence[SnapshotRecord]) -> None:
    expiring = any(snap.expires_at for snap in found)
    columns = ["ID", "RESOURCE", "BEFORE REV", "DRIVER", "SIZE", "CHECKSUM", "STATUS", "TAKEN"]
    table = Table(*columns, *(["EXPIRES"] if expiring else []))
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
        out.print(
            "No deployments yet. Create one with: mlops deploy DEPLOYMENT --model MODEL:VERSION"
        )
        return
    table = Table("DEPLOYMENT", "REVISION", "PHASE", "COMPONENTS", "UPDATED")
    for s in statuses:
        components = Text(components_text(s.components))
        if s.quarantined:
            components.append(f"  (quarantined: {', '.join(s.quarantined)})", "red")
        table.add_row(s.deployment, str(s.revision or "-"), s.phase, components, when(s.updated_at))
    out.print(table)


def history_table(records: Sequence[ReleaseRecord]) -> None:
    table = Table(
        "REV", "STATUS", "COMPONENTS", "CHANGED", "ACTION", "TRIGGER", "ACTOR", "REASON", "AT"
    )
    for r in records:
        e = r.event
        action = e.action if e else "-"
        if e and e.action == "rollback" and e.details.get("component"):
            action += f" {e.details['component']} alone"
        if e and e.action == "rollback" and r.source_revision:
            action += f" to {r.source_revision}"
        changed = "\n".join(
            f"{c['component']}: {c['from'] or '-'} → {c['to'] or '-'}" for c in r.changes
        )
        table.add_row(
            str(r.revision),
            r.status,
            components_text(r.components),
            changed or "-",
            action,
            e.trigger if e else "-",
            e.actor if e else "-",
            (e.reason if e else None) or "-",
            when(r.created_at),
        )
    out.print(table)


def watch_line(status: DeploymentStatus) -> str:
    """The watch view in one line, for logs."""
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
            (status.deployment, "bold"),
            f"  stable revision {status.revision} ({components_text(status.components)})  phase ",
            (status.phase, "bold"),
        )
    ]
    rollout = status.rollout
    if rollout:
        bar = ProgressBar(total=rollout["steps"], completed=rollout["step"], width=30)
        weights = f"candidate {rollout['weight']:g}%"
        if rollout["mirror"]:
            weights += f", mirror {rollout['mirror']:g}%"
        head = Table.grid(padding=(0, 1))
        head.add_row(
            f"{rollout['strategy']} of revision {rollout['candidate_revision']}",
            bar,
            f"step {rollout['step']}/{rollout['steps']}",
            weights,
            f"verdict: {rollout['outcome']}",
        )
        lines.append(head)
        for reason in rollout["reasons"][:4]:
            lines.append(Text(f"  {reason}", style="dim"))
    table = Table(
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
