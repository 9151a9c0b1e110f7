"""Data resources and their snapshots: declare and remove resources, list snapshots, journal a
deploy's snapshots, and expire the ones retention no longer keeps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlops.core.refs import check_name
from mlops.core.retention import RetainedSnapshot, decide_expired
from mlops.core.signature import Signature
from mlops.core.snapshot_status import EXPIRED, PENDING, READY, move
from mlops.errors import Conflict, InvalidInput, NotFound
from mlops.records import DataResource, SnapshotRecord, iso
from mlops.service.base import ServiceBase, deployment_of, version_of
from mlops.service.processes import this_process
from mlops.service.snapshotting import (
    POLICIES,
    Taken,
    as_snapshot,
    delete_files,
    retention_policy,
    snapshot_row,
)


class DataOps(ServiceBase):
    def add_data(
        self,
        deployment: str,
        name: str,
        *,
        driver: str,
        location: str,
        policy: str = "restore",
        keep_last: int | None = None,
        max_age_s: float | None = None,
    ) -> DataResource:
        """Declare data that DEPLOYMENT reads (or change how it is kept)."""
        check_name(name, "data resource")
        if policy not in POLICIES:
            raise InvalidInput(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        retention = {k: v for k, v in (("keep_last", keep_last), ("max_age_s", max_age_s)) if v}
        retention_policy(retention)  # checks the values
        if driver in ("sqlite", "directory") and not Path(location).exists():
            raise NotFound(f"{driver} resource {location} does not exist")
        if driver in ("sqlite", "directory"):
            location = str(Path(location).resolve())
        self.drivers.driver(driver).checksum(location)  # readable, and of that kind
        resource = DataResource(name, driver, location, policy, retention)
        check_name(deployment, "deployment")
        with self.store.write() as tx:
            # Declared before the first release, so that release's lookup can read it.
            dep = tx.deployment(deployment, lock=True) or tx.create_deployment(
                deployment, self.clock()
            )
            tx.put_data_resource(dep.id, resource, self.clock())
        return resource

    def data(self, deployment: str | None = None) -> list[DataResource]:
        with self.store.read() as tx:
            return tx.data_resources(deployment_of(tx, deployment).id)

    def remove_data(self, deployment: str | None, name: str) -> None:
        with self.store.write() as tx:
            dep = deployment_of(tx, deployment, lock=True)
            for revision in (dep.stable_revision, dep.candidate_revision):
                release = tx.release(dep, revision) if revision is not None else None
                for component, ref in (release.components if release else {}).items():
                    if Signature.from_dict(version_of(tx, ref).signature).reads == name:
                        raise Conflict(
                            f"release {revision} of {dep.name!r} reads {name!r} (its "
                            f"{component} {ref}): deploy a release without it first"
                        )
            if not tx.delete_data_resource(dep.id, name):
                raise NotFound(f"deployment {dep.name!r} has no data resource {name!r}")

    def snapshots(self, deployment: str | None = None) -> list[SnapshotRecord]:
        """The snapshots of a deployment's data, newest first."""
        with self.store.read() as tx:
            dep = deployment_of(tx, deployment)
            rows = tx.snapshot_rows(dep.id)
        return [
            SnapshotRecord(
                id=r.id,
                deployment=dep.name,
                revision=r.revision,
                resource=r.resource,
                driver=r.driver,
                location=r.location,
                checksum=r.checksum,
                size_bytes=r.size_bytes,
                status=r.status,
                created_at=r.created_at,
                expires_at=r.expires_at,
                details=dict(r.details),
            )
            for r in rows
        ]

    def expire_snapshots(self, deployment: str) -> list[int]:
        """Delete the snapshots that their resources' retention policies no longer keep (the
        newest ready snapshot of each resource is always kept); their rows say `expired`. A
        snapshot whose files cannot be deleted stays `ready` (logged), for a later pass."""
        now = self.clock()
        with self.store.read() as tx:
            dep = deployment_of(tx, deployment)
            policies = {r.name: retention_policy(r.retention) for r in tx.data_resources(dep.id)}
            rows = tx.snapshot_rows(dep.id, status=READY)
        newest = {}
        for row in sorted(rows, key=lambda r: r.id):
            newest[row.resource] = row.id
        expired: list[int] = []
        for name, policy in policies.items():
            mine = [
                RetainedSnapshot(r.id, name, r.created_at, pinned=r.id == newest[name])
                for r in rows
                if r.resource == name
            ]
            expired += [i for i in decide_expired(mine, policy, now) if isinstance(i, int)]
        by_id = {r.id: r for r in rows}
        deleted = []
        for snapshot_id in expired:
            row = by_id[snapshot_id]
            if not delete_files(self.drivers, as_snapshot(row)):
                continue  # its files stay: the row stays ready, and the next pass tries again
            with self.store.write() as tx:
                tx.update_snapshot(
                    snapshot_id,
                    status=move(row.status, EXPIRED),
                    details={**row.details, "expired_at": iso(now)},
                )
            deleted.append(snapshot_id)
        return deleted

    def _named_resources(
        self, deployment: str, names: Sequence[str], *, needed: bool
    ) -> list[DataResource]:
        with self.store.read() as tx:
            dep = tx.deployment(deployment)
            declared = {r.name: r for r in tx.data_resources(dep.id)} if dep else {}
        unknown = [n for n in names if n not in declared]
        if unknown:
            known = ", ".join(sorted(declared)) or "none declared"
            raise NotFound(
                f"deployment {deployment!r} has no data resource {unknown[0]!r} ({known})"
            )
        if needed and not declared:
            raise InvalidInput(
                f"a migration changes data, and {deployment!r} declares none: "
                "declare it first with `mlops data add`"
            )
        return [declared[n] for n in (names or sorted(declared))]

    def _journal(self, deployment: str, taken: Taken) -> list[int]:
        """Before a migration runs: store its snapshots as `pending` for the revision about to
        be written, with this process's identity (see `recover_interrupted`)."""
        now = self.clock()
        with self.store.write() as tx:
            dep = deployment_of(tx, deployment, lock=True)
            busy = tx.snapshot_rows(dep.id, status=PENDING, limit=1)
            if busy:
                who = busy[0].details.get("deployer") or {}
                raise Conflict(
                    f"another deploy of {dep.name!r} is running its migration (process "
                    f"{who.get('pid')} on {who.get('host')}, since {who.get('started_at')}): "
                    "wait for it to finish"
                )
            me = this_process(now)
            revision = dep.latest_revision + 1
            return [
                tx.insert_snapshot(
                    snapshot_row(dep.id, revision, r, snap, status=PENDING, deployer=me)
                )
                for r, snap in taken
            ]

    def _forget(self, pending: Sequence[int]) -> None:
        """A failed deploy put its data back: its pending rows go (the store is as before)."""
        if pending:
            with self.store.write() as tx:
                tx.delete_snapshots(pending, status=PENDING)
