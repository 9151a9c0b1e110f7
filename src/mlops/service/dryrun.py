"""What a dry run of a deploy or a rollback answers: the operation's own transaction, rolled
back instead of committed, and what it would do to the data, read but never changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mlops.errors import MlopsError
from mlops.records import DataResource, Deployment, ReleaseResult
from mlops.service.drivers import SnapshotDrivers
from mlops.service.snapshotting import as_snapshot
from mlops.store.store import Tx


def dry_rollback(
    tx: Tx, drivers: SnapshotDrivers, dep: Deployment, result: ReleaseResult
) -> ReleaseResult:
    """A rollback's result as its dry run tells it, from inside its own transaction: each data
    resource's plan (restore or keep), and for a restore the writes it would discard."""
    planned: list[dict[str, Any]] = []
    if result.event_id is not None:
        planned = list(tx.event_details(result.event_id).get("data", []))
    rows = {row.id: row for row in tx.snapshot_rows(dep.id)}
    resources = {r.name: r for r in tx.data_resources(dep.id)}
    data = []
    for entry in planned:
        shown = {k: entry[k] for k in ("resource", "policy", "snapshot")}
        row, resource = rows.get(entry["snapshot"]), resources.get(entry["resource"])
        if entry.get("status") != "restoring" or row is None or resource is None:
            data.append({**shown, "status": "would keep"})
            continue
        try:
            changes = drivers.driver(row.driver).changes_since(as_snapshot(row), resource.location)
            found: dict[str, Any] = {
                "discards": changes.to_dict(),
                "discards_summary": changes.describe(),
            }
        except MlopsError as exc:
            found = {"discards": None, "problem": exc.message}
        data.append({**shown, "status": "would restore", **found})
    return replace(result, event_id=None, dry_run=True, data=data)


def dry_deploy(result: ReleaseResult, resources: Sequence[DataResource]) -> ReleaseResult:
    """A deploy's result as its dry run tells it: the resources its migration would snapshot
    first (the migration itself does not run)."""
    data = [
        {"resource": r.name, "driver": r.driver, "policy": r.policy, "status": "would snapshot"}
        for r in resources
    ]
    return replace(result, event_id=None, dry_run=True, data=data)
