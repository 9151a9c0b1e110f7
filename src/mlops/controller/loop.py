"""The controller: each tick, every active rollout gets its events, the core decides, and the
actions are carried out in the same transaction that stores the new state.

Events are, in order: the start (with a readiness check of the candidate), the commands
people queued (`mlops promote`, `abort`, …), and a tick with the measurements that arrived
since the last one. A crash at any point leaves either the old state or the new state with
all of its effects; the next tick goes on from there.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlops.controller.judge import metric_state, with_metrics
from mlops.controller.prometheus import PrometheusProvider
from mlops.core.measure import Measurements, combine
from mlops.core.rollout import (
    Command,
    Event,
    HealthFailed,
    Judge,
    MakeStable,
    Notify,
    RollBack,
    RolloutState,
    Route,
    Start,
    Tick,
    hold,
    start_state,
    transition,
)
from mlops.core.routing import Split
from mlops.errors import Conflict, InvalidInput, SnapshotMissing
from mlops.notify import (
    Alert,
    Notifier,
    channel_of,
    close_notifiers,
    deliver_due,
    enqueue,
    notifiers_for,
    subscriptions_for,
)
from mlops.records import CONTROLLER, Actor, Deployment
from mlops.rollout_spec import MetricSpec, NotifySpec, load_spec
from mlops.runtime import LoadedVersion, make_pipeline
from mlops.service import Service, end_rollout, planned_restores
from mlops.store.store import Tx

log = logging.getLogger("mlops.controller")

DEFAULT_NOTIFY = NotifySpec(log=True)
"""Without `notify:` entries, alerts still reach the log."""

RECORDED_KINDS = frozenset({"promoted", "rolled_back", "aborted"})

JudgeFactory = Callable[[dict[str, Any]], Judge]
"""Builds the analysis judge from a rollout spec's `analysis` section."""


class Controller:
    def __init__(
        self,
        service: Service,
        judge_factory: JudgeFactory,
        *,
        clock: Callable[[], float] = time.time,
        prometheus: PrometheusProvider | None = None,
        restores_in_child: bool = False,
    ) -> None:
        self.service = service
        self.restores_in_child = restores_in_child
        """Run data restores in a child process (`mlops data restore`): a controller inside
        the gateway must not hold the interpreter while it checksums 100 MB."""
        self.judge_factory = judge_factory
        self.clock = clock
        self._prometheus = prometheus
        self._stop = threading.Event()
        self._entries: dict[str, NotifySpec] = {"log": DEFAULT_NOTIFY}
        self._notifiers: dict[str, Notifier] = {}
        self._notifier_keys: list[str] = []
        self._delivery: threading.Thread | None = None
        self._deliver_asked = threading.Event()
        self._closing = threading.Event()
        self.active = False
        """Whether the last tick found a rollout in progress."""

    def tick(self) -> list[str]:
        """One pass over every active rollout; returns a line per rollout that changed."""
        with self.service.store.read() as tx:
            names = [
                d.name for d in tx.deployments(limit=100_000) if d.candidate_revision is not None
            ]
        self.active = bool(names)
        done = []
        for name in names:
            try:
                line = self._step(name)
            except Exception:
                log.exception("rollout of %s: tick failed; retrying next tick", name)
                continue
            if line:
                done.append(line)
        try:
            # Data restores that rollbacks marked (here, by a person, or before a crash), and
            # the data of deploys killed between their migration and their release.
            done += self._restore()
        except Exception:
            log.exception("a data restore failed; the snapshot row records why")
        return done

    def _restore(self) -> list[str]:
        if not self.service.restores_due():
            return []
        if not self.restores_in_child:
            outcomes = self.service.put_back_due()
        else:
            settings = self.service.settings
            child = subprocess.run(
                [sys.executable, "-m", "mlops", "data", "restore", "-o", "json"],
                env={
                    **os.environ,
                    "MLOPS_STORE": settings.store_url,
                    "MLOPS_HOME": str(settings.home),
                },
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise RuntimeError(child.stderr.strip() or f"exit {child.returncode}")
            outcomes = json.loads(child.stdout or "[]")
        return [f"data {o['resource']}: {o['status']}" for o in outcomes]

    def run(self, interval_s: float = 1.0) -> None:
        while not self._stop.wait(interval_s):
            self.tick()

    def stop(self) -> None:
        self._stop.set()

    def _step(self, name: str) -> str | None:
        now = self.clock()
        with self.service.store.read() as tx:
            dep = tx.deployment(name)
            rollout = tx.active_rollout(dep) if dep else None
        if dep is None or rollout is None:
            return None
        try:
            spec_file = load_spec(rollout["spec"])
            spec = spec_file.plan()
            judge = self.judge_factory(spec_file.analysis)
        except InvalidInput as exc:
            return self._abandon(name, rollout, now, exc.message)
        entries = spec_file.notify or [DEFAULT_NOTIFY]
        for entry in entries:
            self._entries.setdefault(entry.model_dump_json(), entry)
        # Each event with who caused it: the controller, or the person whose command it is.
        events: list[tuple[Event, Actor]] = []
        stored = rollout["state"] or {}
        if "rollout" in stored:
            state = RolloutState.from_dict(stored["rollout"])
        else:
            state = start_state(now)
            problem = self._readiness(dep)
            events.append((HealthFailed(now, problem) if problem else Start(now), CONTROLLER))
        metrics = spec_file.metrics()
        if metrics:
            judge = self._with_metrics(judge, metrics, dep.name, rollout, state.analysis, now)
        watermark = int(stored.get("watermark", 0))
        labels_since = _dt(float(stored.get("ticked_at", now)))
        stable, candidate, watermark = self._increments(
            dep, rollout, watermark, labels_since, _dt(now)
        )
        with self.service.store.write() as tx:
            dep = tx.deployment(name, lock=True)
            if dep is None or dep.candidate_revision != rollout["candidate_revision"]:
                return None  # ended meanwhile (a rollback from another process)
            current = tx.active_rollout(dep)
            if current is None or current["state"] != rollout["state"]:
                # Another controller ticked it since the read above (this tick outlasted its
                # lease): acting on the state read then would act twice.
                return None
            for command in tx.pending_commands(dep.id):
                source = (command["args"] or {}).get("actor_source", "claimed")
                events.append(
                    (
                        Command(now, command["kind"], command["reason"]),
                        Actor(command["actor"], str(source)),
                    )
                )
                tx.mark_command(command["id"], at=_dt(now), result={"applied": True})
            events.append((Tick(now, stable, candidate), CONTROLLER))
            lines = []
            for event, actor in events:
                state, actions = transition(spec, state, event, judge)
                back = next((a for a in actions if isinstance(a, RollBack)), None)
                refused = _refusal(tx, dep, rollout) if back is not None else None
                if back is not None and refused is not None:
                    state, actions = hold(state, refused, f"{back.trigger}: {back.reason}")
                for action in actions:
                    lines.append(
                        self._execute(
                            tx, dep, rollout, action, now, entries, spec_file.keep_warm, actor
                        )
                    )
                    refreshed = tx.deployment(name, lock=True)
                    assert refreshed is not None
                    dep = refreshed
            tx.update_rollout(
                rollout["id"],
                state={"rollout": state.to_dict(), "watermark": watermark, "ticked_at": now},
                step_index=state.step,
                updated_at=_dt(now),
                **(
                    {"phase": state.phase}
                    if state.phase in ("progressing", "paused", "promoted")
                    else {}
                ),
            )
        return "; ".join(line for line in lines if line) or None

    def _abandon(self, name: str, rollout: dict[str, Any], now: float, problem: str) -> str | None:
        """End a rollout whose stored spec no longer validates (stored before specs were checked
        whole at deploy): it is aborted (its candidate stays usable), the event and the log
        alert say why, and the commands waiting for it are closed. When the data's policy
        refuses to go back, the candidate is only taken off traffic."""
        reason = f"the stored rollout spec does not validate: {problem}"
        at = _dt(now)
        stable_rev, candidate_rev = rollout["stable_revision"], rollout["candidate_revision"]
        with self.service.store.write() as tx:
            dep = tx.deployment(name, lock=True)
            if dep is None or dep.candidate_revision != candidate_rev:
                return None
            refused = _refusal(tx, dep, rollout)
            if refused is not None:
                split = Split(((stable_rev, 100.0), (candidate_rev, 0.0)))
                tx.set_routes(dep, split.to_dict(), at)
                log.warning("rollout of %s: %s; held: %s", name, reason, refused)
                return None
            for command in tx.pending_commands(dep.id):
                tx.mark_command(command["id"], at=at, result={"applied": False, "reason": reason})
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
            _alert(
                tx,
                [DEFAULT_NOTIFY],
                ended.event_id,
                "aborted",
                dep.name,
                "health",
                reason,
                at,
                candidate_rev,
                stable_rev,
            )
        return f"{name}: revision {candidate_rev} aborted (health: {reason})"

    def _with_metrics(
        self,
        judge: Judge,
        metrics: tuple[MetricSpec, ...],
        name: str,
        rollout: dict[str, Any],
        analysis: dict[str, Any],
        now: float,
    ) -> Judge:
        """The judge with this tick's readings of the metrics that are due."""
        if self._prometheus is None:
            self._prometheus = PrometheusProvider()
        values = {
            "deployment": name,
            "stable_revision": str(rollout["stable_revision"]),
            "candidate_revision": str(rollout["candidate_revision"]),
        }
        readings = self._prometheus.read_due(metrics, metric_state(analysis), values, now)
        return with_metrics(judge, [m.check() for m in metrics], readings, now)

    def _readiness(self, dep: Deployment) -> str | None:
        """Load the candidate's components as the gateway will run them, predict on sample
        rows (the example rows kept at registration, else rows of zeros shaped by the
        signature), and check the outputs: one per row, finite, among the known classes."""
        with self.service.store.read() as tx:
            assert dep.candidate_revision is not None
            candidate = tx.release(dep, dep.candidate_revision)
            resources = {r.name: r for r in tx.data_resources(dep.id)}
        if candidate is None:
            return f"release {dep.candidate_revision} is missing"
        try:
            pipeline = make_pipeline(
                [
                    (name, LoadedVersion(self.service.version(ref), self.service.load(ref)))
                    for name, ref in candidate.components.items()
                ],
                resources,
            )
        except Exception as exc:
            return f"it did not load: {type(exc).__name__}: {exc}"
        signature = pipeline.signature
        if signature.example:
            rows, where = _example_rows(signature.example), "its example rows"
        elif signature.n_features and not pipeline.reads:
            rows, where = np.zeros((3, signature.n_features)), "rows of zeros"
        else:
            return None  # nothing tells what a request holds: the analysis judges it live
        try:
            out = pipeline(rows)
        except Exception as exc:
            return f"it failed on {where}: {type(exc).__name__}: {exc}"
        if len(out) != len(rows):
            return f"it returned {len(out)} outputs for {len(rows)} rows"
        if out.dtype.kind in "fc" and not np.all(np.isfinite(out)):
            return f"it returned NaN or infinite values on {where}"
        classes = pipeline.classes
        if classes and out.ndim == 1:
            known = {_label(c) for c in classes}
            unknown = sorted({_label(v) for v in out.tolist()} - known)
            if unknown:
                return f"it predicted {unknown[0]!r}, not one of its classes {sorted(known)}"
        return None

    def _increments(
        self,
        dep: Deployment,
        rollout: dict[str, Any],
        watermark: int,
        labels_since: datetime,
        until: datetime,
    ) -> tuple[Measurements, Measurements, int]:
        """The stable and candidate measurements written since the last tick. The candidate's
        answers to mirrored requests count as its own: the copies of the stable release's
        requests it answered, with no user waiting."""
        found, top = self.service.measurement_increments(dep, watermark, labels_since, until)
        stable_rev, candidate_rev = rollout["stable_revision"], rollout["candidate_revision"]
        parts: dict[int, list[Measurements]] = {stable_rev: [], candidate_rev: []}
        for m in found:
            # Pinned requests chose their version: they are not a sample of the split.
            if m.revision in parts and (
                m.role == "live" or (m.role == "shadow" and m.revision == candidate_rev)
            ):
                parts[m.revision].append(m)
        empty = {rev: Measurements(dep.name, rev) for rev in parts}
        stable = combine(parts[stable_rev]) or empty[stable_rev]
        candidate = combine(parts[candidate_rev]) or empty[candidate_rev]
        return stable, candidate, max(watermark, top)

    def close(self) -> None:
        """Stop: the alerts asked for by `deliver` before this are tried first."""
        if self._delivery is not None:
            self._closing.set()
            self._deliver_asked.set()
            self._delivery.join(timeout=60)
            self._delivery = None
        if self._prometheus is not None:
            self._prometheus.close()
            self._prometheus = None
        close_notifiers(self._notifiers)
        self._notifiers, self._notifier_keys = {}, []

    def deliver(self) -> None:
        """Have the alerts that are due sent, by this controller's delivery thread: a receiver
        that hangs until its timeout never holds a tick, and so never delays a rollback."""
        if self._delivery is None:
            self._closing.clear()
            self._delivery = threading.Thread(
                target=self._deliver_loop, name="mlops-notify", daemon=True
            )
            self._delivery.start()
        self._deliver_asked.set()

    def _deliver_loop(self) -> None:
        while True:
            self._deliver_asked.wait()
            self._deliver_asked.clear()
            try:
                self.deliver_now()
            except Exception:
                log.exception("alert delivery failed; trying again after the next tick")
            if self._closing.is_set():
                return

    def deliver_now(self) -> None:
        """Send the alerts that are due, in this thread (no transaction is open here)."""
        self._adopt_waiting_entries()
        wanted = set(self._entries)
        if wanted != set(self._notifier_keys):
            close_notifiers(self._notifiers)
            self._notifiers = notifiers_for(self._entries.values())
            self._notifier_keys = sorted(wanted)
        deliver_due(self.service.store, self._notifiers, _dt(self.clock()))

    def _adopt_waiting_entries(self) -> None:
        """Learn the `notify:` entries of alerts left waiting by rollouts this controller never
        stepped: after a restart, or on taking over from a leader that died, the rollout may
        have ended already, and its alerts would otherwise wait for good."""
        known = {channel_of(entry) for entry in self._entries.values()}
        with self.service.store.read() as tx:
            unknown = tx.undelivered_channels() - known
            specs = tx.specs_with_undelivered(sorted(unknown)) if unknown else []
        for spec in specs:
            try:
                entries = load_spec(spec).notify
            except InvalidInput:
                continue  # a spec that no longer reads cannot name its receivers
            for entry in entries:
                if channel_of(entry) in unknown:
                    self._entries.setdefault(entry.model_dump_json(), entry)

    def _execute(
        self,
        tx: Tx,
        dep: Deployment,
        rollout: dict[str, Any],
        action: Any,
        now: float,
        entries: list[NotifySpec],
        keep_warm_s: float,
        actor: Actor,
    ) -> str:
        """Carry out one action; `actor` caused it (a person's command: trigger `manual`)."""
        at = _dt(now)
        trigger = "analysis" if actor == CONTROLLER else "manual"
        stable_rev, candidate_rev = rollout["stable_revision"], rollout["candidate_revision"]
        if isinstance(action, Route):
            shadows = ((candidate_rev, action.mirror),) if action.mirror > 0 else ()
            split = Split(
                ((stable_rev, 100.0 - action.weight), (candidate_rev, action.weight)), shadows
            )
            tx.set_routes(dep, split.to_dict(), at)
            return (
                f"{dep.name}: candidate {candidate_rev} at {action.weight:g}% "
                f"(mirror {action.mirror:g}%)"
            )
        if isinstance(action, MakeStable):
            tx.make_stable(dep, candidate_rev, at=at, warm_until=now + keep_warm_s)
            tx.update_rollout(
                rollout["id"], phase="promoted", ended_at=at, verdict={"reason": action.reason}
            )
            _announce(
                tx, dep, entries, "promote", "promoted", action.reason, at, rollout, trigger, actor
            )
            return f"{dep.name}: revision {candidate_rev} promoted ({action.reason})"
        if isinstance(action, RollBack):
            status = "rolled_back" if action.quarantine else "aborted"
            ended_with = end_rollout(
                tx,
                dep,
                status=status,
                quarantine=action.quarantine,
                trigger=action.trigger,
                reason=action.reason,
                actor=actor,
                at=at,
                evidence=action.evidence,
            )
            assert ended_with.event_id is not None
            _alert(
                tx,
                entries,
                ended_with.event_id,
                status,
                dep.name,
                action.trigger,
                ended_with.reason or action.reason,
                at,
                candidate_rev,
                stable_rev,
                action.evidence,
                actor,
            )
            ended = status.replace("_", " ")
            why = f"{action.trigger}: {action.reason}"
            return f"{dep.name}: revision {candidate_rev} {ended} ({why})"
        assert isinstance(action, Notify)
        if action.kind in RECORDED_KINDS:
            return ""  # the promote / rollback / abort event above already says it
        _announce(
            tx,
            dep,
            entries,
            f"rollout_{action.kind}",
            action.kind,
            action.message,
            at,
            rollout,
            trigger,
            actor,
        )
        return ""


def _refusal(tx: Tx, dep: Deployment, rollout: dict[str, Any]) -> str | None:
    """Why the data's policy refuses to roll this rollout back (None when it allows it)."""
    try:
        planned_restores(
            tx, dep, after=rollout["stable_revision"], upto=rollout["candidate_revision"]
        )
    except (Conflict, SnapshotMissing) as exc:
        return str(exc)
    return None


def _announce(
    tx: Tx,
    dep: Deployment,
    entries: list[NotifySpec],
    action: str,
    kind: str,
    reason: str,
    at: datetime,
    rollout: dict[str, Any],
    trigger: str,
    actor: Actor,
) -> None:
    """Record a rollout's event (stable -> candidate) and queue its alert."""
    stable_rev, candidate_rev = rollout["stable_revision"], rollout["candidate_revision"]
    event_id = tx.insert_event(
        deployment_id=dep.id,
        action=action,
        trigger=trigger,
        actor=actor.name,
        actor_source=actor.source,
        reason=reason,
        at=at,
        from_revision=stable_rev,
        to_revision=candidate_rev,
    )
    _alert(
        tx,
        entries,
        event_id,
        kind,
        dep.name,
        trigger,
        reason,
        at,
        stable_rev,
        candidate_rev,
        actor=actor,
    )


def _alert(
    tx: Tx,
    entries: list[NotifySpec],
    event_id: int,
    kind: str,
    deployment: str,
    trigger: str,
    reason: str,
    at: datetime,
    from_revision: int,
    to_revision: int,
    evidence: tuple[str, ...] = (),
    actor: Actor = CONTROLLER,
) -> None:
    """Queue the alert in the outbox, in the transaction of the change it reports."""
    channels = subscriptions_for(entries, deployment, kind)
    if channels:
        alert = Alert(
            kind,
            deployment,
            trigger,
            reason,
            at,
            from_revision=from_revision,
            to_revision=to_revision,
            evidence=evidence,
            actor=actor.name,
            details={} if actor == CONTROLLER else {"actor_source": actor.source},
        )
        enqueue(tx, event_id, channels, alert)


def _example_rows(example: tuple[tuple[Any, ...], ...]) -> np.ndarray:
    """Example rows as the gateway decodes them: numbers as floats, text columns as objects."""
    try:
        return np.asarray(example, dtype=float)
    except ValueError:
        return np.asarray(example, dtype=object)


def _label(value: Any) -> str:
    """A class label as text, with 1.0 and 1 the same label."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
