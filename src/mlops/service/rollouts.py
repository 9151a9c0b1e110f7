"""Rollouts: what the controller does to the rollouts in progress, each step one transaction
(commands taken, the state machine's actions carried out, the new state stored), and the
status of every deployment with its rollout."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.core.limits import LIST_MAX
from mlops.core.measure import Measurements
from mlops.core.rollout import (
    Command,
    Event,
    Judge,
    RollBack,
    RolloutSpec,
    RolloutState,
    Tick,
    hold,
    transition,
)
from mlops.core.routing import Split
from mlops.errors import Conflict, InvalidInput
from mlops.records import (
    CONTROLLER,
    Actor,
    DataResource,
    Deployment,
    DeploymentStatus,
    ReleaseRecord,
    components_dict,
    iso,
)
from mlops.service.base import check_reason, deployment_of
from mlops.service.ending import end_rollout
from mlops.service.releases import ReleaseOps
from mlops.service.rollout_actions import Acting, at_time, execute, queue_alert, refusal
from mlops.store.rollouts import RolloutRow
from mlops.store.store import Tx

if TYPE_CHECKING:
    from mlops.rollout_spec import NotifySpec

Rollout = RolloutRow
"""A rollout row as the store returns it."""


COMMANDS = ("promote", "promote_full", "abort", "pause", "resume")
"""What a person may ask of a rollout in progress (`Service.request`)."""


@dataclass(frozen=True)
class RolloutStep:
    """One controller step of a rollout, read before its transaction: the events that came
    before the commands (a start, or a failed readiness check), this tick's measurements, and
    how to carry out what the state machine decides."""

    rollout: Rollout
    spec: RolloutSpec
    judge: Judge
    state: RolloutState
    events: tuple[tuple[Event, Actor], ...]
    stable: Measurements
    candidate: Measurements
    watermark: int
    now: float
    entries: list[NotifySpec]
    keep_warm_s: float


@dataclass(frozen=True)
class Abandoned:
    """How `abandon_rollout` ended: the line to report, or why the data's policy held it."""

    line: str | None = None
    held: str | None = None


class RolloutOps(ReleaseOps):
    def request(
        self,
        deployment: str | None,
        kind: str,
        *,
        reason: str | None = None,
        actor: Actor | str | None = None,
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
            dep = deployment_of(tx, deployment, lock=True)
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

    def rollouts_in_progress(self) -> list[str]:
        """The names of the deployments with a candidate being rolled out."""
        with self.store.read() as tx:
            return [d.name for d in tx.deployments(None) if d.candidate_revision is not None]

    def rollout_in_progress(self, name: str) -> tuple[Deployment, Rollout] | None:
        """A deployment and its active rollout, or None when it has none (any more)."""
        with self.store.read() as tx:
            dep = tx.deployment(name)
            rollout = tx.active_rollout(dep) if dep else None
        if dep is None or rollout is None:
            return None
        return dep, rollout

    def candidate_of(self, dep: Deployment) -> tuple[ReleaseRecord | None, dict[str, DataResource]]:
        """The candidate release of a rollout, with the deployment's data resources."""
        assert dep.candidate_revision is not None
        with self.store.read() as tx:
            candidate = tx.release(dep, dep.candidate_revision)
            resources = {r.name: r for r in tx.data_resources(dep.id)}
        return candidate, resources

    def advance_rollout(self, name: str, step: RolloutStep) -> str | None:
        """Take the commands people queued, run the state machine over the step's events and
        carry out its actions, and store the new state: one transaction. None when the
        rollout ended or moved on since `step` was read (another process acted)."""
        rollout, now = step.rollout, step.now
        with self.store.write() as tx:
            dep = tx.deployment(name, lock=True)
            if dep is None or dep.candidate_revision != rollout.candidate_revision:
                return None  # ended meanwhile (a rollback from another process)
            current = tx.active_rollout(dep)
            if current is None or current.state != rollout.state:
                # Another controller ticked it since the read above (this tick outlasted its
                # lease): acting on the state read then would act twice.
                return None
            events = [*step.events, *_take_commands(tx, dep, now)]
            events.append((Tick(now, step.stable, step.candidate), CONTROLLER))
            state, lines = step.state, []
            judge = _Watched(step.judge)
            for event, actor in events:
                state, actions = transition(step.spec, state, event, judge)
                back = next((a for a in actions if isinstance(a, RollBack)), None)
                refused = refusal(tx, dep, rollout) if back is not None else None
                if back is not None and refused is not None:
                    state, actions = hold(state, refused, f"{back.trigger}: {back.reason}")
                for action in actions:
                    acting = Acting(tx, dep, rollout, now, step.entries, step.keep_warm_s, actor)
                    lines.append(execute(acting, action))
                    refreshed = tx.deployment(name, lock=True)
                    assert refreshed is not None
                    dep = refreshed
            tx.update_rollout(
                rollout.id,
                state={"rollout": state.to_dict(), "watermark": step.watermark, "ticked_at": now},
                step_index=state.step,
                updated_at=at_time(now),
                phase=state.phase if state.phase in ("progressing", "paused", "promoted") else None,
            )
            if judge.seen is not None:
                tx.add_analysis_point(rollout.id, at_time(now), _point(state, judge.seen))
        return "; ".join(line for line in lines if line) or None

    def abandon_rollout(
        self, name: str, rollout: Rollout, now: float, problem: str, entries: Sequence[NotifySpec]
    ) -> Abandoned:
        """End a rollout whose stored spec no longer validates (stored before specs were checked
        whole at deploy): it is aborted (its candidate stays usable), the event and the alert
        say why, and the commands waiting for it are closed. When the data's policy refuses
        to go back, the candidate is only taken off traffic."""
        reason = f"the stored rollout spec does not validate: {problem}"
        at = at_time(now)
        stable_rev, candidate_rev = rollout.stable_revision, rollout.candidate_revision
        with self.store.write() as tx:
            dep = tx.deployment(name, lock=True)
            if dep is None or dep.candidate_revision != candidate_rev:
                return Abandoned()
            refused = refusal(tx, dep, rollout)
            if refused is not None:
                split = Split(((stable_rev, 100.0), (candidate_rev, 0.0)))
                tx.set_routes(dep, split.to_dict(), at)
                return Abandoned(held=f"{reason}; held: {refused}")
            for command in tx.pending_commands(dep.id):
                tx.mark_command(command.id, at=at, result={"applied": False, "reason": reason})
            ended = end_rollout(
                tx,
                dep,
                status="aborted",
                quarantine=False,
                trigger="health",
                reason=reason,
                actor=CONTROLLER,
                at=at,
            )
            assert ended.event_id is not None
            queue_alert(
                tx,
                list(entries),
                ended.event_id,
                "aborted",
                dep.name,
                "health",
                reason,
                at,
                candidate_rev,
                stable_rev,
            )
        return Abandoned(line=f"{name}: revision {candidate_rev} aborted (health: {reason})")

    def specs_with_undelivered(
        self, known: AbstractSet[str | None]
    ) -> tuple[set[str], list[dict[str, Any]]]:
        """The outbox channels with alerts waiting that are not in `known`, and the rollout
        specs that name them."""
        with self.store.read() as tx:
            unknown = tx.undelivered_channels() - known
            specs = tx.specs_with_undelivered(sorted(unknown)) if unknown else []
        return unknown, specs

    def status(self, deployment: str | None = None) -> list[DeploymentStatus]:
        """Each deployment (or the one named) with its stable components and its rollout: a
        few queries whatever the number of deployments (one more per rollout in progress)."""
        with self.store.read() as tx:
            if deployment is not None:
                deps = [deployment_of(tx, deployment)]
                stables = tx.stable_components(deps[0].id)
            else:
                deps = tx.deployments(limit=LIST_MAX)
                stables = tx.stable_components()
            out = []
            for dep in deps:
                stable = stables.get(dep.id, {})
                rollout = _rollout_view(tx, dep) if dep.candidate_revision is not None else None
                out.append(
                    DeploymentStatus(
                        deployment=dep.name,
                        revision=dep.stable_revision,
                        latest_revision=dep.latest_revision,
                        phase=rollout["phase"] if rollout else "idle",
                        components={c: stable[c][0] for c in sorted(stable)},
                        quarantined=[
                            str(ref) for ref, status in stable.values() if status == "quarantined"
                        ],
                        updated_at=dep.updated_at,
                        rollout=rollout,
                    )
                )
            return out


def _rollout_view(tx: Tx, dep: Deployment) -> dict[str, Any] | None:
    rollout = tx.active_rollout(dep)
    if rollout is None:
        return None
    candidate = tx.release(dep, rollout.candidate_revision)
    state = rollout.state.get("rollout", {})
    reasons = list(state.get("reasons", []))
    try:
        from mlops.rollout_spec import load_spec

        steps = len(load_spec(rollout.spec).plan().steps)
    except InvalidInput as exc:  # stored before specs were checked whole: the controller ends it
        steps = int(state.get("step", 0)) + 1
        reasons.insert(0, f"the stored rollout spec does not validate: {exc.message}")
    return {
        "candidate_revision": rollout.candidate_revision,
        "stable_revision": rollout.stable_revision,
        "strategy": rollout.strategy,
        "phase": state.get("phase", rollout.phase),
        "paused_by": state.get("paused_by"),
        "step": min(int(state.get("step", 0)) + 1, steps),
        "steps": steps,
        "weight": float(state.get("weight", 0.0)),
        "mirror": float(state.get("mirror", 0.0)),
        "outcome": state.get("outcome", "inconclusive"),
        "reasons": reasons,
        "components": components_dict(dict(candidate.components)) if candidate else {},
        "started_at": iso(rollout.started_at),
    }


class _Watched:
    """A judge that keeps its last judgement, for the rollout's analysis trajectory."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.seen: Any = None

    def __call__(
        self, state: dict[str, Any], stable: Measurements, candidate: Measurements, elapsed: float
    ) -> tuple[dict[str, Any], Any]:
        analysis, self.seen = self.judge(state, stable, candidate, elapsed)
        return analysis, self.seen


def _point(state: RolloutState, judgement: Any) -> dict[str, Any]:
    """One tick of the trajectory: where the rollout stood and each check's numbers."""
    checks = []
    for check in getattr(judgement, "checks", ()):
        numbers = check.to_dict() if hasattr(check, "to_dict") else {}
        numbers.pop("reason", None)
        checks.append(numbers)
    return {
        "phase": state.phase,
        "step": state.step,
        "weight": state.weight,
        "outcome": judgement.outcome,
        "checks": checks,
    }


def _take_commands(tx: Tx, dep: Deployment, now: float) -> list[tuple[Event, Actor]]:
    """The commands people queued, each with who asked; marked applied in this transaction."""
    events: list[tuple[Event, Actor]] = []
    for command in tx.pending_commands(dep.id):
        source = command.args.get("actor_source", "claimed")
        events.append(
            (Command(now, command.kind, command.reason), Actor(command.actor, str(source)))
        )
        tx.mark_command(command.id, at=at_time(now), result={"applied": True})
    return events
