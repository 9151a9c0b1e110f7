"""Releases: deploy a new revision (with its data migration), roll back to an earlier one,
split traffic between revisions, queue a request for the controller, read the history."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlops.core.refs import ComponentRef, check_name
from mlops.core.release import (
    ComponentChange,
    RevisionKey,
    RollbackKey,
    RollbackRequest,
    plan_deploy,
    plan_rollback,
    rollback_key,
)
from mlops.core.routing import Split
from mlops.core.snapshot_status import PENDING, READY, move
from mlops.errors import Conflict, InvalidInput, NotFound
from mlops.records import Actor, Deployment, ModelVersion, ReleaseRecord, ReleaseResult
from mlops.service.base import (
    check_reason,
    core_of,
    deployment_of,
    stable_of,
    version_of,
)
from mlops.service.dryrun import dry_deploy, dry_rollback
from mlops.service.ending import end_rollout
from mlops.service.migration import Migration
from mlops.service.registry import RegistryOps
from mlops.service.restores import RestoreOps, mark_restores
from mlops.service.revisions import append_release, check_targets, unchanged
from mlops.service.snapshotting import Taken, discard, put_back, snapshot_all, snapshot_row
from mlops.store.store import Tx

if TYPE_CHECKING:
    from mlops.rollout_spec import RolloutFile

TRIGGERS = ("manual", "analysis", "health", "deadline")


@dataclass(frozen=True)
class DeployOptions:
    """What a deploy changes and how (see `Service.deploy`)."""

    model: ComponentRef | None = None
    components: Mapping[str, ComponentRef] | None = None
    remove: frozenset[str] = frozenset()
    force: bool = False
    reason: str | None = None
    actor: Actor | str | None = None
    rollout: RolloutFile | None = None

    def changes(self) -> dict[str, ComponentRef]:
        """The components asked for, `model` included."""
        changes = dict(self.components or {})
        if self.model is not None:
            if "model" in changes and changes["model"] != self.model:
                raise InvalidInput("--model and --component model=… name different versions")
            changes["model"] = self.model
        return changes


@dataclass(frozen=True)
class RollbackOptions:
    """Where a rollback goes and why (see `Service.rollback`)."""

    version: int | None = None
    revision: int | None = None
    component: str | None = None
    reason: str | None = None
    force: bool = False
    trigger: str = "manual"
    actor: Actor | str | None = None


class ReleaseOps(RestoreOps, RegistryOps):
    def deploy(
        self,
        deployment: str,
        *,
        model: ComponentRef | None = None,
        components: Mapping[str, ComponentRef] | None = None,
        remove: frozenset[str] = frozenset(),
        force: bool = False,
        reason: str | None = None,
        actor: Actor | str | None = None,
        rollout: RolloutFile | None = None,
        migration: str | None = None,
        data: Sequence[str] = (),
        dry_run: bool = False,
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

        A `dry_run` answers what would be written, and the data a migration would snapshot,
        without changing anything (the migration does not run).
        """
        options = DeployOptions(model, components, remove, force, reason, actor, rollout)
        if dry_run:
            return self._deploy_dry_run(deployment, options, migration, data)
        self._recover_before(deployment, raising=True)
        taken: Taken = []
        pending: list[int] = []
        if migration is not None or data:
            taken, pending = self._migrate(deployment, migration, data)
        try:
            result = self._write_release(deployment, options, taken, pending)
        except BaseException:
            put_back(self.drivers, taken, lambda: self._forget(pending))
            raise
        if taken:
            self.expire_snapshots(deployment)
        return result

    def _deploy_dry_run(
        self,
        deployment: str,
        options: DeployOptions,
        migration: str | None,
        data: Sequence[str],
    ) -> ReleaseResult:
        resources = []
        if migration is not None or data:
            resources = self._named_resources(deployment, data, needed=migration is not None)
        if migration is not None:
            Migration.parse(migration)
        result = self._write_release(
            deployment, options, [], [], dry_run=True, migrating=bool(resources)
        )
        return dry_deploy(result, resources)

    def _migrate(
        self, deployment: str, migration: str | None, data: Sequence[str]
    ) -> tuple[Taken, list[int]]:
        """Snapshot the resources, journal the snapshots, run the migration; on a failure the
        data is put back and nothing stays journalled."""
        resources = self._named_resources(deployment, data, needed=migration is not None)
        job = Migration.parse(migration) if migration is not None else None
        taken = snapshot_all(self.drivers, resources, self.settings.home / "snapshots" / deployment)
        try:
            pending = self._journal(deployment, taken)
        except BaseException:
            discard(self.drivers, taken)  # the migration has not run: the data is as it was
            raise
        try:
            if job is not None:
                job.run(resources)
        except BaseException:
            put_back(self.drivers, taken, lambda: self._forget(pending))
            raise
        return taken, pending

    def _write_release(
        self,
        deployment: str,
        options: DeployOptions,
        taken: Taken,
        pending: Sequence[int],
        *,
        dry_run: bool = False,
        migrating: bool = False,
    ) -> ReleaseResult:
        """The release transaction of `deploy`: the next revision, with the deploy's snapshots
        made ready and, for a staged strategy, the rollout started (rolled back: `dry_run`)."""
        from mlops.rollout_spec import load_spec

        spec = options.rollout or load_spec(strategy="direct")
        check_name(deployment, "deployment")
        check_reason(options.reason)
        changes = options.changes()
        verify = self._verified_ahead(changes.values())
        now = self.clock()
        who = self._actor(options.actor)
        with self.store.write(dry_run=dry_run) as tx:
            for ref in changes.values():
                version_of(tx, ref)
            dep = tx.deployment(deployment, lock=True) or tx.create_deployment(deployment, now)
            _refuse_during_rollout(dep)
            stable = stable_of(tx, dep)
            plan = plan_deploy(core_of(stable), changes, options.remove)
            if not plan.changes:
                assert stable is not None
                if taken or migrating:
                    raise InvalidInput(
                        f"{dep.name!r} already serves these components: a migration rides on a "
                        "release that changes one"
                    )
                return unchanged(dep, "deploy", stable)
            versions = check_targets(tx, dep, plan.components, plan.changes, options.force, verify)
            staged = spec.strategy != "direct" and stable is not None
            details: dict[str, Any] = {"strategy": spec.strategy if staged else "direct"}
            if options.force:
                details["forced"] = True
            result = append_release(
                tx,
                dep,
                action="rollout" if staged else "deploy",
                trigger="manual",
                actor=who,
                reason=options.reason,
                at=now,
                versions=versions,
                changes=plan.changes,
                source_revision=None,
                details=details,
                status="candidate" if staged else "stable",
                strategy=spec.strategy if staged else "direct",
            )
            if taken:
                _ready_snapshots(tx, dep, result, taken, pending)
            if staged:
                assert stable is not None
                _start_rollout(tx, dep, stable, result.revision, spec, now)
            return result

    def _verified_ahead(self, refs: Iterable[ComponentRef]) -> Callable[[ModelVersion], None]:
        """Check the artifacts of `refs` before the write lock is taken (hashing takes time);
        the verifier returned checks, under the lock, a version the plan pins that this did
        not check."""
        with self.store.read() as tx:
            asked = [version_of(tx, ref) for ref in refs]
        verify = self._verifier(set())
        for version in asked:
            verify(version)
        return verify

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
        actor: Actor | str | None = None,
        dry_run: bool = False,
    ) -> ReleaseResult:
        """Make an earlier release stable again, as a new revision (see DESIGN.md, rollback).
        The data that the releases it undoes migrated is restored after the switch, while
        the stable release serves (per each resource's policy). An interrupted deploy's data
        is put back first (`recover_interrupted`); if that fails, the rollback still goes on.
        A `dry_run` answers what would change, and the writes each restore would discard,
        without changing anything."""
        options = RollbackOptions(version, revision, component, reason, force, trigger, actor)
        if dry_run:
            return self._switch_back(deployment, options, dry_run=True)
        self._recover_before(deployment, raising=False)
        result = self._switch_back(deployment, options)
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

    def _switch_back(
        self, deployment: str | None, options: RollbackOptions, *, dry_run: bool = False
    ) -> ReleaseResult:
        """The rollback transaction: the new revision, its restores marked (rolled back, and
        told as a plan: `dry_run`)."""
        if options.trigger not in TRIGGERS:
            raise InvalidInput(f"unknown trigger {options.trigger!r}: one of {', '.join(TRIGGERS)}")
        if options.component is not None:
            check_name(options.component, "component")
        check_reason(options.reason)
        now = self.clock()
        who = self._actor(options.actor)
        with self.store.write(dry_run=dry_run) as tx:
            dep = deployment_of(tx, deployment, lock=True)
            result = self._roll_back(tx, dep, options, who, now)
            return dry_rollback(tx, self.drivers, dep, result) if dry_run else result

    def _roll_back(
        self, tx: Tx, dep: Deployment, options: RollbackOptions, who: Actor, now: datetime
    ) -> ReleaseResult:
        request = RollbackRequest(options.revision, options.version, options.component)
        if dep.candidate_revision is not None:
            # A rollback during a rollout ends it first: traffic back to stable, the
            # candidate's new versions quarantined.
            ended = end_rollout(
                tx,
                dep,
                status="rolled_back",
                quarantine=True,
                trigger=options.trigger,
                reason=options.reason or "rolled back during the rollout",
                actor=who,
                at=now,
            )
            if request == RollbackRequest():
                return ended
            dep = deployment_of(tx, dep.name, lock=True)
        stable = stable_of(tx, dep)
        if stable is None:
            raise NotFound(f"deployment {dep.name!r} has no release to roll back from")
        core_stable = core_of(stable)
        assert core_stable is not None
        key = rollback_key(core_stable, request)
        found, registered = _rollback_target(tx, dep, key)
        plan = plan_rollback(core_stable, request, key, core_of(found), registered)
        if not plan.changes:
            return unchanged(dep, "rollback", stable)
        verify = self._verifier(set())
        versions = check_targets(tx, dep, plan.components, plan.changes, options.force, verify)
        rolled = append_release(
            tx,
            dep,
            action="rollback",
            trigger=options.trigger,
            actor=who,
            reason=options.reason,
            at=now,
            versions=versions,
            changes=plan.changes,
            source_revision=plan.source_revision,
            details=_rollback_details(options, plan.source_revision),
            replaced_status="rolled_back",
        )
        if options.component is None and plan.source_revision is not None:
            assert rolled.event_id is not None
            mark_restores(
                tx, dep, rolled.event_id, after=plan.source_revision, upto=stable.revision
            )
        return rolled

    def set_traffic(
        self,
        deployment: str | None,
        weights: Mapping[int, float],
        *,
        shadows: Mapping[int, float] | None = None,
        force: bool = False,
        reason: str | None = None,
        actor: Actor | str | None = None,
    ) -> Split:
        """Split live traffic between release revisions; copy shares of it to shadows."""
        split = Split(tuple(sorted(weights.items())), tuple(sorted((shadows or {}).items())))
        check_reason(reason)
        now = self.clock()
        who = self._actor(actor)
        verify = self._verifier(set())
        with self.store.write() as tx:
            dep = deployment_of(tx, deployment, lock=True)
            if dep.stable_revision is None:
                raise NotFound(f"deployment {dep.name!r} has no release yet")
            for revision in sorted(split.revisions):
                release = tx.release(dep, revision)
                if release is None:
                    raise NotFound(f"release {revision} of {dep.name!r} does not exist")
                if split.weight_of(revision) > 0 or revision in dict(split.shadows):
                    check_targets(
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


def _refuse_during_rollout(dep: Deployment) -> None:
    if dep.candidate_revision is not None:
        raise Conflict(
            f"{dep.name!r} has a rollout in progress (candidate revision "
            f"{dep.candidate_revision}): promote or abort it first"
        )


def _ready_snapshots(
    tx: Tx, dep: Deployment, result: ReleaseResult, taken: Taken, pending: Sequence[int]
) -> None:
    """Make a deploy's pending snapshots ready with the revision it wrote, in its transaction."""
    assert result.event_id is not None
    ids = list(pending)
    still = {row.id for row in tx.snapshot_rows(dep.id, status=PENDING)}
    if not set(ids) <= still:
        raise Conflict(
            f"the snapshots this deploy of {dep.name!r} took were recovered by "
            "another process, which judged it dead; its data was put back"
        )
    for i, (r, snap) in zip(ids, taken, strict=True):
        row = snapshot_row(dep.id, result.revision, r, snap)
        tx.update_snapshot(
            i, status=move(PENDING, READY), details=row.details, revision=result.revision
        )
    tx.update_event_details(
        result.event_id,
        {
            "snapshots": [
                {"resource": r.name, "snapshot": i} for (r, _), i in zip(taken, ids, strict=True)
            ]
        },
    )


def _start_rollout(
    tx: Tx, dep: Deployment, stable: ReleaseRecord, candidate: int, spec: RolloutFile, now: datetime
) -> None:
    tx.insert_rollout(
        dep,
        candidate_revision=candidate,
        stable_revision=stable.revision,
        strategy=spec.strategy,
        spec=spec.model_dump(mode="json"),
        phase="progressing",
        step_index=0,
        state={},
        started_at=now,
        updated_at=now,
    )
    # The candidate joins the route table with no traffic, so gateways load it (and the
    # controller can check that it is ready) before any request reaches it.
    fresh = tx.deployment(dep.name)
    assert fresh is not None
    split = Split(((stable.revision, 100.0), (candidate, 0.0)))
    tx.set_routes(fresh, split.to_dict(), now)


def _rollback_target(
    tx: Tx, dep: Deployment, key: RollbackKey
) -> tuple[ReleaseRecord | None, bool]:
    """The release a rollback key names (None when no release served it), and whether the
    version it names is registered."""
    if isinstance(key, RevisionKey):
        return tx.release(dep, key.revision), False
    target = tx.version(key.ref.model, key.ref.version)
    if target is None:
        return None, False
    pinned = tx.pinned_revision(dep.id, key.component, target.id)
    return (tx.release(dep, pinned) if pinned is not None else None), True


def _rollback_details(options: RollbackOptions, source_revision: int | None) -> dict[str, Any]:
    details: dict[str, Any] = {"restores": source_revision}
    if options.component:
        details["component"] = options.component
    if options.version is not None:
        details["version"] = options.version
    if options.force:
        details["forced"] = True
    return details
