"""Restores: the snapshots that rollbacks marked and the data of deploys that died between
their migration and their release, put back (verified) by whichever process claims them."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from mlops.core.restores import PlannedRestore, TakenSnapshot, plan_restores
from mlops.core.snapshot_status import (
    ABANDONED,
    EXPIRED,
    PENDING,
    READY,
    RESTORE_FAILED,
    RESTORED,
    RESTORING,
    move,
    restore_order,
)
from mlops.errors import MlopsError, NotFound, RestoreFailed
from mlops.records import DataResource, Deployment
from mlops.service.base import deployment_of
from mlops.service.data import DataOps
from mlops.service.processes import process_alive, this_process
from mlops.service.snapshotting import as_snapshot, check_present, delete_files
from mlops.settings import redact_text
from mlops.store.leases import inherited_fence
from mlops.store.snapshots import SnapshotRow
from mlops.store.store import Tx


class RestoreOps(DataOps):
    def _recover_before(self, deployment: str | None, *, raising: bool) -> None:
        """Before a deploy or a rollback: put back the data of an interrupted deploy and finish
        the restores a crashed rollback left, so that nothing restores over newer work later."""
        try:
            self.put_back_due(deployment)
        except NotFound:
            return  # no such deployment yet: nothing to recover
        except RestoreFailed:
            if raising:
                raise  # the snapshot row and the event say why; the next attempt goes on

    def put_back_due(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """Put back the data of interrupted deploys, then finish the restores that rollbacks
        marked; the outcomes of the restores this process ran. Run by a leading controller's
        child process, it writes under the fence the controller handed it."""
        with inherited_fence():
            self.recover_interrupted(deployment)
            return self.finish_restores(deployment)

    def recover_interrupted(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """Find the deploys that died after their migration and before their release (their
        snapshots are still `pending` and their process is gone, see `process_alive`) and
        mark their snapshots for restoring, with an event on the deployment. The revision
        they were to write is skipped, never reused. `finish_restores` then puts the data
        back (verified) and marks each snapshot `abandoned`.

        A pending snapshot exists only while its deploy runs: the deploy's release
        transaction makes it `ready`, and a failed deploy deletes it after putting its data
        back. The controller calls this every tick; `deploy` and `rollback` before they start.
        """
        with self.store.read() as tx:
            dep = tx.deployment(deployment) if deployment is not None else None
            if deployment is not None and dep is None:
                return []
            rows = tx.snapshot_rows(dep.id if dep else None, status=PENDING)
            if not rows:
                return []
            names = {dep.id: dep.name} if dep else {d.id: d.name for d in tx.deployments(None)}
        dead: dict[int, list[int]] = {}
        for row in rows:
            if not process_alive(row.details.get("deployer")):
                dead.setdefault(row.deployment_id, []).append(row.id)
        claimed: list[dict[str, Any]] = []
        for dep_id, ids in dead.items():
            claimed += self._recover_deploy(names[dep_id], ids)
        return claimed

    def _recover_deploy(self, name: str, ids: list[int]) -> list[dict[str, Any]]:
        """Mark for restoring the pending snapshots `ids` of a dead deploy of `name`."""
        now = self.clock()
        with self.store.write() as tx:
            found = tx.deployment(name, lock=True)
            assert found is not None
            current = {r.id: r for r in tx.snapshot_rows(found.id, status=PENDING)}
            mine = [  # checked again under the lock: another process may have claimed them
                current[i]
                for i in sorted(ids)
                if i in current and not process_alive(current[i].details.get("deployer"))
            ]
            if not mine:
                return []
            revision = max(r.revision for r in mine)
            who = mine[0].details.get("deployer") or {}
            planned = [
                {"resource": r.resource, "snapshot": r.id, "status": "restoring"} for r in mine
            ]
            event_id = tx.insert_event(
                deployment_id=found.id,
                action="recover",
                trigger="crash",
                actor=self.settings.actor,
                actor_source=self.settings.actor_source,
                reason=(
                    f"the deploy of revision {revision} was interrupted after its migration "
                    f"and before its release was written (process {who.get('pid')} on "
                    f"{who.get('host')}, started {who.get('started_at')}); its data is put "
                    "back from the snapshots taken before the migration"
                ),
                at=now,
                from_revision=found.stable_revision,
                to_revision=None,
                details={"interrupted": {"revision": revision, **who}, "data": planned},
            )
            for r in mine:
                tx.update_snapshot(
                    r.id,
                    status=move(r.status, RESTORING),
                    details={**r.details, "event_id": event_id, "abandoned": True},
                )
            tx.skip_revision(found, revision)
        return [{**p, "deployment": name, "event": event_id} for p in planned]

    def finish_restores(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """Restore the snapshots that committed rollbacks marked (also after a crash: the
        controller calls this every tick). Each outcome goes into the snapshot row and the
        rollback's event: verified checksum, writes discarded, or the error.

        It also puts back the data of interrupted deploys (`recover_interrupted` marked their
        snapshots): those go first, as they are newer than any snapshot a rollback restores,
        and end `abandoned`, their files deleted."""
        with self.store.read() as tx:
            dep = deployment_of(tx, deployment) if deployment is not None else None
            rows = tx.snapshot_rows(dep.id if dep else None, status=RESTORING)
            resources = {
                (dep_id, r.name): r
                for dep_id in {row.deployment_id for row in rows}
                for r in tx.data_resources(dep_id)
            }
        by_id = {row.id: row for row in rows}
        outcomes = []
        for snapshot_id in restore_order((r.id, _abandoned(r)) for r in rows):
            row = self._claim(by_id[snapshot_id])
            if row is None:
                continue  # another live process (a controller, the rollback's CLI) restores it
            resource = resources.get((row.deployment_id, row.resource))
            outcomes.append(self._restore(row, resource))
        failed = [o for o in outcomes if o["status"] == "failed"]
        if failed:
            first = failed[0]
            if _abandoned(by_id[first["snapshot"]]):
                raise RestoreFailed(
                    f"the data of an interrupted deploy was not put back: {first['resource']!r} "
                    f"was not restored: {first['error']}"
                )
            raise RestoreFailed(
                f"the rollback is done, but {first['resource']!r} was not restored: "
                f"{first['error']}"
            )
        return outcomes

    def _restore(self, row: SnapshotRow, resource: DataResource | None) -> dict[str, Any]:
        """Restore one claimed snapshot and record the outcome in its row and its event."""
        outcome: dict[str, Any] = {"resource": row.resource, "snapshot": row.id}
        try:
            if resource is None:
                raise NotFound(f"data resource {row.resource!r} is no longer declared")
            done = self.drivers.driver(resource.driver).restore(as_snapshot(row), resource.location)
            outcome |= {
                "status": "restored",
                "checksum": done.checksum,
                "seconds": round(done.seconds, 3),
                "writes_discarded": done.writes_discarded,
                "changes": done.changes.describe(),
                "counted_as": done.writes_counted_as,
            }
            status = ABANDONED if _abandoned(row) else RESTORED
        except MlopsError as exc:
            outcome |= {"status": "failed", "error": redact_text(str(exc))}
            status = RESTORE_FAILED
        details = dict(row.details)
        with self.store.write() as tx:
            tx.update_snapshot(
                row.id,
                status=move(row.status, status),
                details={**details, "restore": outcome},
            )
            if "event_id" in details:
                tx.update_event_details(details["event_id"], {f"data_{row.resource}": outcome})
        if status == ABANDONED:
            delete_files(self.drivers, as_snapshot(row))  # put back: not needed again
        return outcome

    def restores_due(self) -> bool:
        """Whether a restore is marked and not taken by a live process, or a deploy's
        snapshots are pending (one that died is to be put back)."""
        with self.store.read() as tx:
            rows = tx.snapshot_rows(None, status=RESTORING) + tx.snapshot_rows(None, status=PENDING)
        return any(
            not process_alive(r.details.get("deployer" if r.status == PENDING else "claim"))
            for r in rows
        )

    def _claim(self, marked: SnapshotRow) -> SnapshotRow | None:
        """Take a restore that a rollback marked, for this process alone; None when it is no
        longer marked, or a live process took it (one that died mid-restore loses it)."""
        with self.store.write() as tx:
            row = tx.snapshot_row_locked(marked.id)
            if row is None or row.status != RESTORING:
                return None
            details = dict(row.details)
            if process_alive(details.get("claim")):
                return None
            details["claim"] = this_process(self.clock())
            tx.update_snapshot(row.id, status=move(row.status, RESTORING), details=details)
        return replace(row, details=details)

    def wait_restores(
        self, deployment: str, event_id: int, timeout_s: float = 3600.0
    ) -> list[dict[str, Any]]:
        """The outcomes of the restores that rollback event `event_id` marked and another
        process took (`_claim`), once they are done."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.store.read() as tx:
                rows = [
                    r
                    for r in tx.snapshot_rows(deployment_of(tx, deployment).id)
                    if r.details.get("event_id") == event_id
                ]
            if all(r.status != RESTORING for r in rows) or time.monotonic() > deadline:
                return [
                    r.details.get("restore")
                    or {"resource": r.resource, "snapshot": r.id, "status": r.status}
                    for r in rows
                ]
            time.sleep(0.2)


def _abandoned(row: SnapshotRow) -> bool:
    """Whether a snapshot row was taken by a deploy that died before writing its release."""
    return bool(row.details.get("abandoned"))


def planned_restores(
    tx: Tx, dep: Deployment, *, after: int, upto: int
) -> tuple[dict[int, SnapshotRow], list[PlannedRestore]]:
    """What a rollback undoing releases (after, upto] does to their data, by snapshot id; raises
    Conflict (a `freeze` policy) or SnapshotMissing before anything is written."""
    rows = {
        row.id: row
        for row in tx.snapshot_rows(dep.id, after_revision=after, upto_revision=upto)
        if row.status in (READY, EXPIRED)
    }
    if not rows:
        return {}, []
    policies = {r.name: r.policy for r in tx.data_resources(dep.id)}
    undone = [TakenSnapshot(i, row.resource, row.revision) for i, row in rows.items()]
    steps = plan_restores(undone, policies, dep.name)
    for step in steps:
        if step.policy == "restore":
            check_present(rows[step.snapshot.id])
    return rows, steps


def mark_restores(tx: Tx, dep: Deployment, event_id: int, *, after: int, upto: int) -> None:
    """Before a rollback commits: for each data resource that releases (after, upto] migrated,
    mark the snapshot taken before the first of them for restoring (policy `restore`), leave
    the data (`keep`), or refuse the rollback (`freeze`). The restores run after the commit
    (`Service.finish_restores`); the event lists what each resource gets."""
    rows, steps = planned_restores(tx, dep, after=after, upto=upto)
    if not steps:
        return
    planned = []
    for step in steps:
        row = rows[step.snapshot.id]
        entry = {"resource": row.resource, "policy": step.policy, "snapshot": row.id}
        if step.policy == "restore":
            tx.update_snapshot(
                row.id,
                status=move(row.status, RESTORING),
                details={**row.details, "event_id": event_id},
            )
            entry["status"] = "restoring"
        else:
            entry["status"] = "kept"
        planned.append(entry)
    tx.update_event_details(event_id, {"data": planned})
