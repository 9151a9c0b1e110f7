"""Every operation, once. The CLI, the Python API and (later) the HTTP API and dashboard call these.

Each write runs in one store transaction: it reads what it needs by key, asks the pure core
for a decision, and writes the outcome with its event, or raises and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlops.core.components import Stage, pipeline_problem, unread_resource
from mlops.core.measure import Measurements, combine
from mlops.core.refs import MAX_INT, ComponentRef, check_name, parse_ref
from mlops.core.release import (
    ComponentChange,
    Release,
    RevisionKey,
    RollbackRequest,
    plan_deploy,
    plan_rollback,
    rollback_key,
)
from mlops.core.restores import PlannedRestore, TakenSnapshot, plan_restores
from mlops.core.retention import RetainedSnapshot, decide_expired
from mlops.core.routing import Split
from mlops.core.signature import Signature
from mlops.data import (
    ABANDONED,
    EXPIRED,
    PENDING,
    POLICIES,
    READY,
    RESTORE_FAILED,
    RESTORED,
    RESTORING,
    Migration,
    as_snapshot,
    check_present,
    discard,
    process_alive,
    put_back,
    retention_policy,
    snapshot_all,
    snapshot_row,
    this_process,
)
from mlops.errors import (
    Conflict,
    IntegrityError,
    InvalidInput,
    MlopsError,
    NotFound,
    Quarantined,
    RestoreFailed,
)
from mlops.records import (
    Actor,
    DataResource,
    Deployment,
    DeploymentStatus,
    Event,
    ModelSummary,
    ModelVersion,
    ReleaseRecord,
    ReleaseResult,
    SnapshotRecord,
    components_dict,
    iso,
)
from mlops.registry.artifacts import ArtifactStore
from mlops.registry.intake import inspect_artifact
from mlops.registry.loaders import load_bytes, load_mlflow
from mlops.rollout_spec import RolloutFile, load_spec
from mlops.settings import Settings, check_actor, load_settings, redact_text
from mlops.snapshots import Snapshot, driver_for
from mlops.store import Store
from mlops.store.store import Tx

TRIGGERS = ("manual", "analysis", "health", "deadline")
COMMANDS = ("promote", "promote_full", "abort", "pause", "resume")
HISTORY_LIMIT = 20
LIST_MAX = 10_000
"""The most rows one listing (history, events, versions) returns."""
REASON_MAX = 2000
"""Longest reason, in characters."""
PG_SETTLE_S = 0.5
"""On PostgreSQL, how old a measurement row must be before the controller reads past it."""
LATE_S = 2.0
"""How long after its stamp a prediction or label may reach the store (gateway flushes)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Service:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings or load_settings()
        self.store = store or Store(self.settings.store_url)
        self.artifacts = ArtifactStore(self.settings.artifacts_dir)
        self.clock = clock

    def close(self) -> None:
        self.store.dispose()

    def _actor(self, actor: str | None) -> Actor:
        """Who acts: a name the caller gives is recorded as claimed, like MLOPS_ACTOR; without
        one, the settings' actor (the OS account, or MLOPS_ACTOR)."""
        if actor is not None:
            return Actor(check_actor(actor), "claimed")
        return Actor(self.settings.actor, self.settings.actor_source)

    # registry

    def register(
        self,
        model: str,
        path: str | Path,
        *,
        flavor: str | None = None,
        tags: Mapping[str, str] | None = None,
        trust: bool = False,
        sample: str | Path | None = None,
        actor: str | None = None,
    ) -> ModelVersion:
        """Check, store and record the next version of `model` (numbers are never reused)."""
        check_name(model, "model")
        source = Path(path).expanduser()
        trusted = trust or self.settings.trust_pickles
        inspected = inspect_artifact(
            source,
            flavor=flavor,
            trusted=trusted,
            sample=Path(sample).expanduser() if sample else None,
        )
        if inspected.data is not None:
            stored = self.artifacts.put_bytes(inspected.data)
        else:
            stored = self.artifacts.put_dir(inspected.path)
        now = self.clock()
        who = self._actor(actor)
        with self.store.write() as tx:
            model_id = tx.model_id(model, create_at=now, lock=True)
            assert model_id is not None
            number = tx.allocate_version(model_id)
            tx.insert_version(
                model_id,
                number,
                flavor=inspected.flavor,
                artifact_sha256=stored.sha256,
                artifact_kind=stored.kind,
                size_bytes=stored.size_bytes,
                signature=inspected.signature.to_dict(),
                tags=dict(tags or {}),
                source=str(source.resolve()),
                trusted=trusted,
                status="ready",
                created_at=now,
                created_by=who.name,
            )
            tx.insert_event(
                deployment_id=None,
                action="register",
                trigger="manual",
                actor=who.name,
                actor_source=who.source,
                reason=None,
                at=now,
                details={
                    "model": model,
                    "version": number,
                    "flavor": inspected.flavor,
                    "sha256": stored.sha256,
                },
            )
            created = tx.version(model, number)
        assert created is not None
        return created

    def models(self) -> list[ModelSummary]:
        with self.store.read() as tx:
            return tx.model_summaries()

    def versions(self, model: str, *, limit: int = 50) -> list[ModelVersion]:
        if not 1 <= limit <= LIST_MAX:
            raise InvalidInput(f"--limit must be from 1 to {LIST_MAX}")
        with self.store.read() as tx:
            found = tx.versions(model, limit=limit)
            if not found and tx.model_id(model) is None:
                raise NotFound(f"model {model!r} is not registered")
            return found

    def version(self, ref: ComponentRef) -> ModelVersion:
        with self.store.read() as tx:
            return _version(tx, ref)

    def load(self, ref: ComponentRef) -> Any:
        """The model object of a version, loaded from its artifact after verifying its hash."""
        version = self.version(ref)
        what = str(ref)
        if version.artifact_kind == "dir":
            return load_mlflow(
                self.artifacts.verified_dir(version.artifact_sha256),
                trusted=version.trusted,
                what=what,
            )
        data = self.artifacts.read_file(version.artifact_sha256)
        return load_bytes(version.flavor, data, trusted=version.trusted, what=what)

    def verify_artifact(self, version: ModelVersion) -> None:
        """Raise `IntegrityError` when the artifact of `version` is missing or corrupt."""
        try:
            self.artifacts.verify(version.artifact_sha256, version.artifact_kind)
        except IntegrityError as exc:
            raise IntegrityError(f"{version.ref} cannot be served: {exc}") from None

    def _verifier(self, done: set[int]) -> Callable[[ModelVersion], None]:
        """`verify_artifact`, once per version: the ids in `done` were checked already."""

        def verify(version: ModelVersion) -> None:
            if version.id not in done:
                self.verify_artifact(version)
                done.add(version.id)

        return verify

    def quarantine(
        self, ref: ComponentRef, *, reason: str | None, lift: bool = False, actor: str | None = None
    ) -> ModelVersion:
        """Mark a version bad (deploying it then needs force), or lift the mark."""
        if not lift and not (reason and reason.strip()):
            raise InvalidInput("a quarantine needs a reason: --reason TEXT")
        check_reason(reason)
        now = self.clock()
        who = self._actor(actor)
        with self.store.write() as tx:
            version = _version(tx, ref)
            status = "ready" if lift else "quarantined"
            tx.set_version_status(
                version.id,
                status,
                reason=None if lift else reason,
                actor=None if lift else who.name,
                at=None if lift else now,
            )
            tx.insert_event(
                deployment_id=None,
                action="unquarantine" if lift else "quarantine",
                trigger="manual",
                actor=who.name,
                actor_source=who.source,
                reason=reason,
                at=now,
                details={
                    "model": ref.model,
                    "version": ref.version,
                    "serving_in": tx.deployments_serving(version.id),
                },
            )
            updated = tx.version(ref.model, ref.version)
        assert updated is not None
        return updated

    # deployments

    def deploy(
        self,
        deployment: str,
        *,
        model: ComponentRef | None = None,
        components: Mapping[str, ComponentRef] | None = None,
        remove: frozenset[str] = frozenset(),
        force: bool = False,
        reason: str | None = None,
        actor: str | None = None,
        rollout: RolloutFile | None = None,
        migration: str | None = None,
        data: Sequence[str] = (),
    ) -> ReleaseResult:
        """Write the next revision with the given components changed.

        With the `direct` strategy (the default) it is stable at once. With any other, it is a
        candidate that the controller moves traffic to step by step, guarded by analysis. The
        first release of a deployment has nothing to compare with and is made stable at once,
        as Argo Rollouts does.

        With a `migration` (an .sql file or `module:function`), the data resources named in
        `data` (all the deployment's, when none are named) are snapshotted and the migration
        runs before the release is written; if the migration or the release fails, the data
        is put back as it was and nothing is written.

        The snapshots are journalled: they are stored as `pending` (with this process's
        identity) before the migration runs, and made `ready` in the transaction that writes
        the release. If this process dies in between, `recover_interrupted` (run by the next
        deploy or rollback of the deployment, and by the controller) puts the data back.
        """
        self._recover_before(deployment, raising=True)
        taken: list[tuple[DataResource, Snapshot]] = []
        pending: list[int] = []
        if migration is not None or data:
            resources = self._named_resources(deployment, data, needed=migration is not None)
            job = Migration.parse(migration) if migration is not None else None
            taken = snapshot_all(resources, self.settings.home / "snapshots" / deployment)
            try:
                pending = self._journal(deployment, taken)
            except BaseException:
                discard(taken)  # the migration has not run: the data is as it was
                raise
            try:
                if job is not None:
                    job.run(resources)
            except BaseException:
                put_back(taken, lambda: self._forget(pending))
                raise
        try:
            result = self._deploy(
                deployment,
                model=model,
                components=components,
                remove=remove,
                force=force,
                reason=reason,
                actor=actor,
                rollout=rollout,
                taken=taken,
                pending=pending,
            )
        except BaseException:
            put_back(taken, lambda: self._forget(pending))
            raise
        if taken:
            self.expire_snapshots(deployment)
        return result

    def _journal(
        self, deployment: str, taken: Sequence[tuple[DataResource, Snapshot]]
    ) -> list[int]:
        """Before a migration runs: store its snapshots as `pending` for the revision about to
        be written, with this process's identity (see `recover_interrupted`)."""
        now = self.clock()
        with self.store.write() as tx:
            dep = _deployment(tx, deployment, lock=True)
            busy = tx.snapshot_rows(dep.id, status=PENDING, limit=1)
            if busy:
                who = (busy[0]["details"] or {}).get("deployer") or {}
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
        marked; the outcomes of the restores this process ran."""
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
            names = {dep.id: dep.name} if dep else {d.id: d.name for d in tx.deployments(100_000)}
        dead: dict[int, list[int]] = {}
        for row in rows:
            if not process_alive((row["details"] or {}).get("deployer")):
                dead.setdefault(row["deployment_id"], []).append(row["id"])
        claimed: list[dict[str, Any]] = []
        for dep_id, ids in dead.items():
            now = self.clock()
            with self.store.write() as tx:
                found = tx.deployment(names[dep_id], lock=True)
                assert found is not None
                current = {r["id"]: r for r in tx.snapshot_rows(dep_id, status=PENDING)}
                mine = [  # checked again under the lock: another process may have claimed them
                    current[i]
                    for i in sorted(ids)
                    if i in current
                    and not process_alive((current[i]["details"] or {}).get("deployer"))
                ]
                if not mine:
                    continue
                revision = max(r["revision"] for r in mine)
                who = (mine[0]["details"] or {}).get("deployer") or {}
                planned = [
                    {"resource": r["resource"], "snapshot": r["id"], "status": "restoring"}
                    for r in mine
                ]
                event_id = tx.insert_event(
                    deployment_id=dep_id,
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
                        r["id"],
                        status=RESTORING,
                        details={**(r["details"] or {}), "event_id": event_id, "abandoned": True},
                    )
                tx.skip_revision(found, revision)
            claimed += [{**p, "deployment": names[dep_id], "event": event_id} for p in planned]
        return claimed

    def expire_snapshots(self, deployment: str) -> list[int]:
        """Delete the snapshots that their resources' retention policies no longer keep (the
        newest ready snapshot of each resource is always kept); their rows say `expired`."""
        now = self.clock()
        with self.store.read() as tx:
            dep = _deployment(tx, deployment)
            policies = {r.name: retention_policy(r.retention) for r in tx.data_resources(dep.id)}
            rows = tx.snapshot_rows(dep.id, status=READY)
        newest = {}
        for row in sorted(rows, key=lambda r: r["id"]):
            newest[row["resource"]] = row["id"]
        expired: list[int] = []
        for name, policy in policies.items():
            mine = [
                RetainedSnapshot(r["id"], name, r["created_at"], pinned=r["id"] == newest[name])
                for r in rows
                if r["resource"] == name
            ]
            expired += [i for i in decide_expired(mine, policy, now) if isinstance(i, int)]
        by_id = {r["id"]: r for r in rows}
        for snapshot_id in expired:
            row = by_id[snapshot_id]
            driver_for(row["driver"]).delete(as_snapshot(row))
            with self.store.write() as tx:
                tx.update_snapshot(
                    snapshot_id,
                    status=EXPIRED,
                    details={**(row["details"] or {}), "expired_at": iso(now)},
                )
        return expired

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

    def _deploy(
        self,
        deployment: str,
        *,
        model: ComponentRef | None = None,
        components: Mapping[str, ComponentRef] | None = None,
        remove: frozenset[str] = frozenset(),
        force: bool = False,
        reason: str | None = None,
        actor: str | None = None,
        rollout: RolloutFile | None = None,
        taken: Sequence[tuple[DataResource, Snapshot]] = (),
        pending: Sequence[int] = (),
    ) -> ReleaseResult:
        """Write the next revision with the given components changed.

        With the `direct` strategy (the default) it is stable at once. With any other, it is a
        candidate that the controller moves traffic to step by step, guarded by analysis. The
        first release of a deployment has nothing to compare with and is made stable at once,
        as Argo Rollouts does.
        """
        spec = rollout or load_spec(strategy="direct")
        check_name(deployment, "deployment")
        check_reason(reason)
        changes = dict(components or {})
        if model is not None:
            if "model" in changes and changes["model"] != model:
                raise InvalidInput("--model and --component model=… name different versions")
            changes["model"] = model
        # The artifacts are checked before the write lock is taken (hashing takes time);
        # a version the plan pins and this did not check is checked under it.
        with self.store.read() as tx:
            asked = [_version(tx, ref) for ref in changes.values()]
        verify = self._verifier(set())
        for version in asked:
            verify(version)
        now = self.clock()
        who = self._actor(actor)
        with self.store.write() as tx:
            for ref in changes.values():
                _version(tx, ref)
            dep = tx.deployment(deployment, lock=True) or tx.create_deployment(deployment, now)
            if dep.candidate_revision is not None:
                raise Conflict(
                    f"{dep.name!r} has a rollout in progress (candidate revision "
                    f"{dep.candidate_revision}): promote or abort it first"
                )
            stable = _stable(tx, dep)
            plan = plan_deploy(_core(stable), changes, remove)
            if not plan.changes:
                assert stable is not None
                if taken:
                    raise InvalidInput(
                        f"{dep.name!r} already serves these components: a migration rides on a "
                        "release that changes one"
                    )
                return _unchanged(dep, "deploy", stable)
            versions = _check_targets(tx, dep, plan.components, plan.changes, force, verify)
            staged = spec.strategy != "direct" and stable is not None
            details: dict[str, Any] = {"strategy": spec.strategy if staged else "direct"}
            if force:
                details["forced"] = True
            result = _append(
                tx,
                dep,
                action="rollout" if staged else "deploy",
                trigger="manual",
                actor=who,
                reason=reason,
                at=now,
                versions=versions,
                changes=plan.changes,
                source_revision=None,
                details=details,
                status="candidate" if staged else "stable",
                strategy=spec.strategy if staged else "direct",
            )
            if taken:
                assert result.event_id is not None
                ids = list(pending)
                still = {row["id"] for row in tx.snapshot_rows(dep.id, status=PENDING)}
                if not set(ids) <= still:
                    raise Conflict(
                        f"the snapshots this deploy of {dep.name!r} took were recovered by "
                        "another process, which judged it dead; its data was put back"
                    )
                for i, (r, snap) in zip(ids, taken, strict=True):
                    # Made ready with the revision actually written, in the same transaction.
                    row = snapshot_row(dep.id, result.revision, r, snap)
                    tx.update_snapshot(
                        i, status=READY, details=row["details"], revision=result.revision
                    )
                tx.update_event_details(
                    result.event_id,
                    {
                        "snapshots": [
                            {"resource": r.name, "snapshot": i}
                            for (r, _), i in zip(taken, ids, strict=True)
                        ]
                    },
                )
            if staged:
                assert stable is not None
                tx.insert_rollout(
                    dep,
                    candidate_revision=result.revision,
                    stable_revision=stable.revision,
                    strategy=spec.strategy,
                    spec=spec.model_dump(mode="json"),
                    phase="progressing",
                    step_index=0,
                    state={},
                    started_at=now,
                    updated_at=now,
                )
                # The candidate joins the route table with no traffic, so gateways load it
                # (and the controller can check that it is ready) before any request reaches it.
                fresh = tx.deployment(dep.name)
                assert fresh is not None
                split = Split(((stable.revision, 100.0), (result.revision, 0.0)))
                tx.set_routes(fresh, split.to_dict(), now)
            return result

    def request(
        self,
        deployment: str | None,
        kind: str,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> int:
        """Ask the controller to promote, fully promote, abort, pause or resume a rollout.

        The request is stored; the controller applies it at its next tick (as Argo Rollouts
        does with `status.abort`), so it works from any process.
        """
        if kind not in COMMANDS:
            raise InvalidInput(f"unknown rollout command {kind!r}: one of {', '.join(COMMANDS)}")
        check_reason(reason)
        who = self._actor(actor)
        now = self.clock()
        with self.store.write() as tx:
            dep = _deployment(tx, deployment, lock=True)
            if tx.active_rollout(dep) is None:
                raise Conflict(f"{dep.name!r} has no rollout in progress")
            return tx.insert_command(
                dep,
                kind=kind,
                args={"actor_source": who.source},
                actor=who.name,
                reason=reason,
                created_at=now,
            )

    def rollback(
        self,
        deployment: str | None = None,
        *,
        version: int | None = None,
        revision: int | None = None,
        component: str | None = None,
        reason: str | None = None,
        force: bool = False,
        trigger: str = "manual",
        actor: str | None = None,
    ) -> ReleaseResult:
        """Make an earlier release stable again, as a new revision (see DESIGN.md, rollback).
        The data that the releases it undoes migrated is restored after the switch, while
        the stable release serves (per each resource's policy). An interrupted deploy's data
        is put back first (`recover_interrupted`); if that fails, the rollback still goes on."""
        self._recover_before(deployment, raising=False)
        result = self._rollback(
            deployment,
            version=version,
            revision=revision,
            component=component,
            reason=reason,
            force=force,
            trigger=trigger,
            actor=actor,
        )
        restored = self.finish_restores(result.deployment)
        if result.event_id is not None:
            # What this rollback marked and another process (a controller) took meanwhile.
            done = {o["snapshot"] for o in restored}
            restored += [
                o
                for o in self.wait_restores(result.deployment, result.event_id)
                if o.get("snapshot") not in done
            ]
        return replace(result, data=restored) if restored else result

    def _rollback(
        self,
        deployment: str | None = None,
        *,
        version: int | None = None,
        revision: int | None = None,
        component: str | None = None,
        reason: str | None = None,
        force: bool = False,
        trigger: str = "manual",
        actor: str | None = None,
    ) -> ReleaseResult:
        """Make an earlier release stable again, as a new revision (see DESIGN.md, rollback)."""
        if trigger not in TRIGGERS:
            raise InvalidInput(f"unknown trigger {trigger!r}: one of {', '.join(TRIGGERS)}")
        if component is not None:
            check_name(component, "component")
        check_reason(reason)
        now = self.clock()
        who = self._actor(actor)
        request = RollbackRequest(revision=revision, version=version, component=component)
        with self.store.write() as tx:
            dep = _deployment(tx, deployment, lock=True)
            if dep.candidate_revision is not None:
                # A rollback during a rollout ends it first: traffic back to stable, the
                # candidate's new versions quarantined.
                ended = end_rollout(
                    tx,
                    dep,
                    status="rolled_back",
                    quarantine=True,
                    trigger=trigger,
                    reason=reason or "rolled back during the rollout",
                    actor=who,
                    at=now,
                )
                if revision is None and version is None and component is None:
                    return ended
                dep = _deployment(tx, dep.name, lock=True)
            stable = _stable(tx, dep)
            if stable is None:
                raise NotFound(f"deployment {dep.name!r} has no release to roll back from")
            core_stable = _core(stable)
            assert core_stable is not None
            key = rollback_key(core_stable, request)
            found: ReleaseRecord | None
            registered = False
            if isinstance(key, RevisionKey):
                found = tx.release(dep, key.revision)
            else:
                target_version = tx.version(key.ref.model, key.ref.version)
                registered = target_version is not None
                pinned = (
                    tx.pinned_revision(dep.id, key.component, target_version.id)
                    if target_version
                    else None
                )
                found = tx.release(dep, pinned) if pinned is not None else None
            plan = plan_rollback(core_stable, request, key, _core(found), registered)
            if not plan.changes:
                return _unchanged(dep, "rollback", stable)
            verify = self._verifier(set())
            versions = _check_targets(tx, dep, plan.components, plan.changes, force, verify)
            details: dict[str, Any] = {"restores": plan.source_revision}
            if component:
                details["component"] = component
            if version is not None:
                details["version"] = version
            if force:
                details["forced"] = True
            rolled = _append(
                tx,
                dep,
                action="rollback",
                trigger=trigger,
                actor=who,
                reason=reason,
                at=now,
                versions=versions,
                changes=plan.changes,
                source_revision=plan.source_revision,
                details=details,
                replaced_status="rolled_back",
            )
            if component is None and plan.source_revision is not None:
                assert rolled.event_id is not None
                mark_restores(
                    tx, dep, rolled.event_id, after=plan.source_revision, upto=stable.revision
                )
            return rolled

    def finish_restores(self, deployment: str | None = None) -> list[dict[str, Any]]:
        """Restore the snapshots that committed rollbacks marked (also after a crash: the
        controller calls this every tick). Each outcome goes into the snapshot row and the
        rollback's event: verified checksum, writes discarded, or the error.

        It also puts back the data of interrupted deploys (`recover_interrupted` marked their
        snapshots): those go first, as they are newer than any snapshot a rollback restores,
        and end `abandoned`, their files deleted."""
        with self.store.read() as tx:
            dep = _deployment(tx, deployment) if deployment is not None else None
            rows = tx.snapshot_rows(dep.id if dep else None, status=RESTORING)
            resources = {
                (dep_id, r.name): r
                for dep_id in {row["deployment_id"] for row in rows}
                for r in tx.data_resources(dep_id)
            }
        outcomes = []
        # An interrupted deploy's snapshots first, newest first; then the rollbacks', in order.
        for marked in sorted(rows, key=lambda r: (0, -r["id"]) if _abandoned(r) else (1, r["id"])):
            row = self._claim(marked)
            if row is None:
                continue  # another live process (a controller, the rollback's CLI) restores it
            resource = resources.get((row["deployment_id"], row["resource"]))
            outcome: dict[str, Any] = {"resource": row["resource"], "snapshot": row["id"]}
            try:
                if resource is None:
                    raise NotFound(f"data resource {row['resource']!r} is no longer declared")
                done = driver_for(resource.driver).restore(as_snapshot(row), resource.location)
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
            details = dict(row["details"] or {})
            with self.store.write() as tx:
                tx.update_snapshot(
                    row["id"], status=status, details={**details, "restore": outcome}
                )
                if "event_id" in details:
                    tx.update_event_details(
                        details["event_id"], {f"data_{row['resource']}": outcome}
                    )
            if status == ABANDONED:
                driver_for(row["driver"]).delete(as_snapshot(row))  # put back: not needed again
            outcomes.append(outcome)
        failed = [o for o in outcomes if o["status"] == "failed"]
        if failed:
            first = failed[0]
            if any(_abandoned(r) for r in rows if r["id"] == first["snapshot"]):
                raise RestoreFailed(
                    f"the data of an interrupted deploy was not put back: {first['resource']!r} "
                    f"was not restored: {first['error']}"
                )
            raise RestoreFailed(
                f"the rollback is done, but {first['resource']!r} was not restored: "
                f"{first['error']}"
            )
        return outcomes

    def restores_due(self) -> bool:
        """Whether a restore is marked and not taken by a live process, or a deploy's
        snapshots are pending (one that died is to be put back)."""
        with self.store.read() as tx:
            rows = tx.snapshot_rows(None, status=RESTORING) + tx.snapshot_rows(None, status=PENDING)
        return any(
            not process_alive(
                (r["details"] or {}).get("deployer" if r["status"] == PENDING else "claim")
            )
            for r in rows
        )

    def _claim(self, marked: Mapping[str, Any]) -> dict[str, Any] | None:
        """Take a restore that a rollback marked, for this process alone; None when it is no
        longer marked, or a live process took it (one that died mid-restore loses it)."""
        with self.store.write() as tx:
            row = tx.snapshot_row_locked(marked["id"])
            if row is None or row["status"] != RESTORING:
                return None
            details = dict(row["details"] or {})
            if process_alive(details.get("claim")):
                return None
            details["claim"] = this_process(self.clock())
            tx.update_snapshot(row["id"], status=RESTORING, details=details)
        return {**row, "details": details}

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
                    for r in tx.snapshot_rows(_deployment(tx, deployment).id)
                    if (r["details"] or {}).get("event_id") == event_id
                ]
            if all(r["status"] != RESTORING for r in rows) or time.monotonic() > deadline:
                return [
                    (r["details"] or {}).get("restore")
                    or {"resource": r["resource"], "snapshot": r["id"], "status": r["status"]}
                    for r in rows
                ]
            time.sleep(0.2)

    # data resources

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
        driver_for(driver).checksum(location)  # readable, and of that kind
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
            return tx.data_resources(_deployment(tx, deployment).id)

    def remove_data(self, deployment: str | None, name: str) -> None:
        with self.store.write() as tx:
            dep = _deployment(tx, deployment, lock=True)
            for revision in (dep.stable_revision, dep.candidate_revision):
                release = tx.release(dep, revision) if revision is not None else None
                for component, ref in (release.components if release else {}).items():
                    if Signature.from_dict(_version(tx, ref).signature).reads == name:
                        raise Conflict(
                            f"release {revision} of {dep.name!r} reads {name!r} (its "
                            f"{component} {ref}): deploy a release without it first"
                        )
            if not tx.delete_data_resource(dep.id, name):
                raise NotFound(f"deployment {dep.name!r} has no data resource {name!r}")

    def snapshots(self, deployment: str | None = None) -> list[SnapshotRecord]:
        """The snapshots of a deployment's data, newest first."""
        with self.store.read() as tx:
            dep = _deployment(tx, deployment)
            rows = tx.snapshot_rows(dep.id)
        return [
            SnapshotRecord(
                id=r["id"],
                deployment=dep.name,
                revision=r["revision"],
                resource=r["resource"],
                driver=r["driver"],
                location=r["location"],
                checksum=r["checksum"],
                size_bytes=r["size_bytes"],
                status=r["status"],
                created_at=r["created_at"],
                expires_at=r["expires_at"],
                details=dict(r["details"] or {}),
            )
            for r in rows
        ]

    def status(self, deployment: str | None = None) -> list[DeploymentStatus]:
        with self.store.read() as tx:
            if deployment is not None:
                deps = [_deployment(tx, deployment)]
            else:
                deps = tx.deployments(limit=10_000)
            out = []
            for dep in deps:
                stable = _stable(tx, dep)
                components = dict(stable.components) if stable else {}
                bad = []
                for ref in components.values():
                    v = tx.version(ref.model, ref.version)
                    if v is not None and v.quarantined:
                        bad.append(str(ref))
                rollout = _rollout_view(tx, dep)
                out.append(
                    DeploymentStatus(
                        deployment=dep.name,
                        revision=dep.stable_revision,
                        latest_revision=dep.latest_revision,
                        phase=rollout["phase"] if rollout else "idle",
                        components=components,
                        quarantined=bad,
                        updated_at=dep.updated_at,
                        rollout=rollout,
                    )
                )
            return out

    def history(
        self,
        deployment: str | None = None,
        *,
        limit: int = HISTORY_LIMIT,
        before: int | None = None,
    ) -> list[ReleaseRecord]:
        """Releases newest first, each with the event that made it; `before` pages back."""
        if not 1 <= limit <= LIST_MAX:
            raise InvalidInput(f"--limit must be from 1 to {LIST_MAX}")
        if before is not None and not 1 <= before <= MAX_INT:
            raise InvalidInput(f"--before must be a revision from 1 to {MAX_INT}")
        with self.store.read() as tx:
            dep = _deployment(tx, deployment)
            return tx.history(dep, limit=limit, before=before)

    def events(self, deployment: str | None = None, *, limit: int = 50) -> list[Event]:
        """Events newest first: who did what, when, why (of one deployment, or all)."""
        if not 1 <= limit <= LIST_MAX:
            raise InvalidInput(f"--limit must be from 1 to {LIST_MAX}")
        with self.store.read() as tx:
            dep = _deployment(tx, deployment) if deployment else None
            return tx.events(dep, limit=limit)

    def set_traffic(
        self,
        deployment: str | None,
        weights: Mapping[int, float],
        *,
        shadows: Mapping[int, float] | None = None,
        force: bool = False,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Split:
        """Split live traffic between release revisions; copy shares of it to shadows."""
        split = Split(tuple(sorted(weights.items())), tuple(sorted((shadows or {}).items())))
        check_reason(reason)
        now = self.clock()
        who = self._actor(actor)
        verify = self._verifier(set())
        with self.store.write() as tx:
            dep = _deployment(tx, deployment, lock=True)
            if dep.stable_revision is None:
                raise NotFound(f"deployment {dep.name!r} has no release yet")
            for revision in sorted(split.revisions):
                release = tx.release(dep, revision)
                if release is None:
                    raise NotFound(f"release {revision} of {dep.name!r} does not exist")
                if split.weight_of(revision) > 0 or revision in dict(split.shadows):
                    _check_targets(
                        tx,
                        dep,
                        release.components,
                        tuple(ComponentChange(n, None, r) for n, r in release.components.items()),
                        force,
                        verify,
                    )
            routes = None if split == Split.only(dep.stable_revision) else split.to_dict()
            tx.set_routes(dep, routes, now)
            tx.insert_event(
                deployment_id=dep.id,
                action="traffic",
                trigger="manual",
                actor=who.name,
                actor_source=who.source,
                reason=reason,
                at=now,
                from_revision=dep.stable_revision,
                to_revision=dep.stable_revision,
                details={"split": split.to_dict()},
            )
        return split

    def measurements(
        self, deployment: str | None, *, window_s: float = 60.0, until: datetime | None = None
    ) -> list[Measurements]:
        """What the gateways measured per revision and role over the last `window_s` seconds."""
        if not window_s > 0:
            raise InvalidInput("the window must be a positive number of seconds")
        end = until or self.clock()
        since = end - timedelta(seconds=window_s)
        with self.store.read() as tx:
            dep = _deployment(tx, deployment)
            rows = tx.measurement_rows(dep.id, since)
            labels = tx.labelled_predictions(dep.id, since)
            mirrored = tx.mirrored_answers(dep.id, since)
        parts: dict[tuple[int, str], list[Measurements]] = {}
        measured = _measured(dep.name, [r for r in rows if r["ended_at"] <= end], labels, mirrored)
        for m in measured:
            parts.setdefault((m.revision, m.role), []).append(m)
        out = [combine(items) for _, items in sorted(parts.items())]
        return [m for m in out if m is not None]

    def add_label(self, deployment_id: int, request_id: str, label: Any) -> str:
        """Keep a delayed label for a request the deployment answered and logged: `accepted`,
        `duplicate` (the first label stays) or `unserved`."""
        with self.store.write() as tx:
            return tx.add_label(deployment_id, request_id, label, self.clock())

    def measurement_increments(
        self, deployment: Deployment, after_id: int, labels_since: datetime, until: datetime
    ) -> tuple[list[Measurements], int]:
        """Measurements (live and shadow) written after row `after_id`, and labels that arrived in
        (labels_since, until]; with the highest row id read, for the next call."""
        # Predictions and labels are flushed a moment after they are stamped: a window that
        # ends LATE_S ago holds all of its rows.
        since, end = labels_since - timedelta(seconds=LATE_S), until - timedelta(seconds=LATE_S)
        with self.store.read() as tx:
            rows = tx.measurement_rows_after(deployment.id, after_id)
            labels = tx.labelled_predictions(deployment.id, since, end)
            mirrored = tx.mirrored_answers(deployment.id, since, end)
        if self.store.dialect == "postgresql":
            # Ids come from a sequence, so one flush may commit after another with a higher
            # id; rows are taken in id order up to the first younger than PG_SETTLE_S, and
            # the rest wait for the next call.
            cutoff = until - timedelta(seconds=PG_SETTLE_S)
            young = next((i for i, r in enumerate(rows) if r["ended_at"] > cutoff), len(rows))
            rows = rows[:young]
        return _measured(deployment.name, rows, labels, mirrored), max(
            (r["id"] for r in rows), default=after_id
        )

    def change_seq(self) -> int:
        with self.store.read() as tx:
            return tx.change_seq()


# helpers: each reads by key inside the caller's transaction


def end_rollout(
    tx: Tx,
    dep: Deployment,
    *,
    status: str,
    quarantine: bool,
    trigger: str,
    reason: str,
    actor: Actor,
    at: datetime,
    evidence: tuple[str, ...] = (),
) -> ReleaseResult:
    """Take the candidate off traffic, close its rollout, and record why.

    `status` is `rolled_back` (its new versions are quarantined when `quarantine`) or
    `aborted` (they stay usable, and warm in the gateways for a while).
    """
    candidate_revision = dep.candidate_revision
    assert candidate_revision is not None
    assert dep.stable_revision is not None
    candidate = tx.release(dep, candidate_revision)
    assert candidate is not None
    quarantined = []
    if quarantine:
        for change in candidate.changes:
            if change.get("to"):
                ref = parse_ref(change["to"])
                version = tx.version(ref.model, ref.version)
                if version is not None and not version.quarantined:
                    tx.set_version_status(
                        version.id,
                        "quarantined",
                        reason=f"{status.replace('_', ' ')} in {dep.name} revision "
                        f"{candidate_revision}: {reason}",
                        actor=actor.name,
                        at=at,
                    )
                    quarantined.append(str(ref))
    rollout = tx.active_rollout(dep)
    tx.end_candidate(dep, status=status, at=at)
    if rollout is not None:
        tx.update_rollout(
            rollout["id"],
            phase=status,
            updated_at=at,
            ended_at=at,
            verdict={"trigger": trigger, "reason": reason, "evidence": list(evidence)},
        )
    changed = [c.get("component") for c in candidate.changes]
    details: dict[str, Any] = {
        "candidate": candidate_revision,
        "components": changed,
        "quarantined": quarantined,
        "evidence": list(evidence),
    }
    if len(candidate.changes) == 1:
        only = candidate.changes[0]
        details["component"] = only.get("component")
        if len(candidate.components) > 1:
            # One component of several changed: the reason (and the alert made from it)
            # says which, so nobody has to compare the two releases to find it.
            reason = (
                f"{reason} (the rollout changed {only.get('component')} alone: "
                f"{only.get('from') or '-'} -> {only.get('to') or '-'})"
            )
    event_id = tx.insert_event(
        deployment_id=dep.id,
        action="rollback" if status == "rolled_back" else "abort",
        trigger=trigger,
        actor=actor.name,
        actor_source=actor.source,
        reason=reason,
        at=at,
        from_revision=candidate_revision,
        to_revision=dep.stable_revision,
        details=details,
    )
    mark_restores(tx, dep, event_id, after=dep.stable_revision, upto=candidate_revision)
    stable = tx.release(dep, dep.stable_revision)
    assert stable is not None
    return ReleaseResult(
        deployment=dep.name,
        action="rollback" if status == "rolled_back" else "abort",
        changed=True,
        revision=dep.stable_revision,
        from_revision=candidate_revision,
        source_revision=dep.stable_revision,
        components=dict(stable.components),
        changes=[
            {"component": c.get("component"), "from": c.get("to"), "to": c.get("from")}
            for c in candidate.changes
        ],
        event_id=event_id,
        reason=reason,
    )


def _rollout_view(tx: Tx, dep: Deployment) -> dict[str, Any] | None:
    rollout = tx.active_rollout(dep)
    if rollout is None:
        return None
    candidate = tx.release(dep, rollout["candidate_revision"])
    state = (rollout["state"] or {}).get("rollout", {})
    reasons = list(state.get("reasons", []))
    try:
        steps = len(load_spec(rollout["spec"]).plan().steps)
    except InvalidInput as exc:  # stored before specs were checked whole: the controller ends it
        steps = int(state.get("step", 0)) + 1
        reasons.insert(0, f"the stored rollout spec does not validate: {exc.message}")
    return {
        "candidate_revision": rollout["candidate_revision"],
        "stable_revision": rollout["stable_revision"],
        "strategy": rollout["strategy"],
        "phase": state.get("phase", rollout["phase"]),
        "step": min(int(state.get("step", 0)) + 1, steps),
        "steps": steps,
        "weight": float(state.get("weight", 0.0)),
        "mirror": float(state.get("mirror", 0.0)),
        "outcome": state.get("outcome", "inconclusive"),
        "reasons": reasons,
        "components": components_dict(dict(candidate.components)) if candidate else {},
        "started_at": iso(rollout["started_at"]),
    }


def _measured(
    deployment: str,
    rows: list[dict[str, Any]],
    labels: list[tuple[int, str, Any, Any]],
    mirrored: Sequence[tuple[int, Any, Any]] = (),
) -> list[Measurements]:
    """Measurement rows, labelled predictions and mirrored answers compared with the live
    ones, as Measurements (one each, to be combined)."""
    out = [
        Measurements(
            deployment,
            row["revision"],
            row["role"],
            row["requests"],
            row["errors"],
            {int(k): v for k, v in row["latency"].items()},
            row["predictions"],
        )
        for row in rows
    ]
    out += [
        Measurements(
            deployment, revision, role, labelled=1, correct=int(_matches(prediction, label))
        )
        for revision, role, prediction, label in labels
    ]
    out += [
        Measurements(deployment, revision, "shadow", compared=1, agreed=int(_matches(answer, live)))
        for revision, answer, live in mirrored
    ]
    return out


def _matches(prediction: Any, label: Any) -> bool:
    """Whether a logged prediction (a list, one item per row) equals its delayed label."""
    if isinstance(prediction, list) and not isinstance(label, list):
        prediction = prediction[0] if len(prediction) == 1 else prediction
    if isinstance(prediction, int | float) and isinstance(label, int | float):
        return float(prediction) == float(label)
    return bool(prediction == label) or str(prediction) == str(label)


def _version(tx: Tx, ref: ComponentRef) -> ModelVersion:
    found = tx.version(ref.model, ref.version)
    if found is not None:
        return found
    if tx.model_id(ref.model) is None:
        raise NotFound(f"model {ref.model!r} is not registered")
    raise NotFound(f"version {ref} is not registered")


def _deployment(tx: Tx, name: str | None, *, lock: bool = False) -> Deployment:
    if name is not None:
        found = tx.deployment(name, lock=lock)
        if found is None:
            raise NotFound(f"deployment {name!r} does not exist")
        return found
    some = tx.deployments(limit=2)
    if not some:
        raise NotFound("the store holds no deployment yet: create one with `mlops deploy`")
    if len(some) > 1:
        raise InvalidInput("the store holds several deployments: name the one you mean")
    return tx.deployment(some[0].name, lock=lock) or some[0]


def _stable(tx: Tx, dep: Deployment) -> ReleaseRecord | None:
    return tx.release(dep, dep.stable_revision) if dep.stable_revision is not None else None


def _core(record: ReleaseRecord | None) -> Release | None:
    if record is None:
        return None
    return Release(record.revision, record.components, record.previous_stable)


def _check_targets(
    tx: Tx,
    dep: Deployment,
    components: Mapping[str, ComponentRef],
    changes: tuple[ComponentChange, ...],
    force: bool,
    verify: Callable[[ModelVersion], None],
) -> dict[str, ModelVersion]:
    """The versions of a release about to be written or routed, after checking that they can
    serve together and that each version it changes to has its artifact intact (`verify`)."""
    versions = {name: _version(tx, ref) for name, ref in components.items()}
    stages = [
        Stage(name, str(v.ref), Signature.from_dict(v.signature)) for name, v in versions.items()
    ]
    unread = unread_resource(stages, {r.name: r.driver for r in tx.data_resources(dep.id)})
    if unread is not None:
        raise InvalidInput(unread)
    if not force:
        for change in changes:
            if change.after is None:
                continue
            target = versions[change.component]
            if target.quarantined:
                raise Quarantined(
                    f"{target.ref} is quarantined ({target.quarantine_reason}); "
                    "pass --force to use it anyway"
                )
        problem = pipeline_problem(stages)
        if problem is not None:
            raise InvalidInput(
                f"these components cannot run as one pipeline: {problem}; "
                "pass --force to use them together anyway"
            )
    for change in changes:
        if change.after is not None:
            verify(versions[change.component])
    return versions


def _unchanged(dep: Deployment, action: str, stable: ReleaseRecord) -> ReleaseResult:
    return ReleaseResult(
        deployment=dep.name,
        action=action,
        changed=False,
        revision=stable.revision,
        from_revision=stable.revision,
        source_revision=None,
        components=dict(stable.components),
    )


def _append(
    tx: Tx,
    dep: Deployment,
    *,
    action: str,
    trigger: str,
    actor: Actor,
    reason: str | None,
    at: datetime,
    versions: dict[str, ModelVersion],
    changes: tuple[ComponentChange, ...],
    source_revision: int | None,
    details: dict[str, Any],
    replaced_status: str = "superseded",
    status: str = "stable",
    strategy: str = "direct",
) -> ReleaseResult:
    revision = dep.latest_revision + 1
    change_dicts = [change.to_dict() for change in changes]
    event_id = tx.insert_event(
        deployment_id=dep.id,
        action=action,
        trigger=trigger,
        actor=actor.name,
        actor_source=actor.source,
        reason=reason,
        at=at,
        from_revision=dep.stable_revision,
        to_revision=revision,
        details={"changes": change_dicts, **details},
    )
    written = tx.append_release(
        dep,
        components={name: v.id for name, v in versions.items()},
        status=status,
        strategy=strategy,
        source_revision=source_revision,
        changes=change_dicts,
        event_id=event_id,
        actor=actor.name,
        at=at,
        replaced_status=replaced_status,
    )
    assert written == revision
    return ReleaseResult(
        deployment=dep.name,
        action=action,
        changed=True,
        revision=revision,
        from_revision=dep.stable_revision,
        source_revision=source_revision,
        components={name: v.ref for name, v in versions.items()},
        changes=change_dicts,
        event_id=event_id,
        reason=reason,
    )


def _abandoned(row: Mapping[str, Any]) -> bool:
    """Whether a snapshot row was taken by a deploy that died before writing its release."""
    return bool((row["details"] or {}).get("abandoned"))


def planned_restores(
    tx: Tx, dep: Deployment, *, after: int, upto: int
) -> tuple[dict[int, dict[str, Any]], list[PlannedRestore]]:
    """What a rollback undoing releases (after, upto] does to their data, by snapshot id; raises
    Conflict (a `freeze` policy) or SnapshotMissing before anything is written."""
    rows = {
        row["id"]: row
        for row in tx.snapshot_rows(dep.id, after_revision=after, upto_revision=upto)
        if row["status"] in (READY, EXPIRED)
    }
    if not rows:
        return {}, []
    policies = {r.name: r.policy for r in tx.data_resources(dep.id)}
    undone = [TakenSnapshot(i, row["resource"], row["revision"]) for i, row in rows.items()]
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
        entry = {"resource": row["resource"], "policy": step.policy, "snapshot": row["id"]}
        if step.policy == "restore":
            tx.update_snapshot(
                row["id"],
                status=RESTORING,
                details={**(row["details"] or {}), "event_id": event_id},
            )
            entry["status"] = "restoring"
        else:
            entry["status"] = "kept"
        planned.append(entry)
    tx.update_event_details(event_id, {"data": planned})


def check_reason(reason: str | None) -> None:
    """A reason is free text (shown escaped), bounded in length."""
    if reason is not None and len(reason) > REASON_MAX:
        raise InvalidInput(f"invalid --reason: {len(reason)} characters, at most {REASON_MAX}")
