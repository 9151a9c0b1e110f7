"""The controller: each tick, every active rollout gets its events, the core decides, and the
service carries out the actions in the same transaction that stores the new state.

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
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlops.controller.judge import metric_state, with_metrics
from mlops.controller.metrics import MetricProvider, MetricProviderFactory
from mlops.controller.prometheus import PrometheusProvider
from mlops.core.measure import Measurements, combine
from mlops.core.rollout import Event, HealthFailed, Judge, RolloutState, Start, start_state
from mlops.errors import InvalidInput, LeaseLost
from mlops.notify import Notifier, channel_of, close_notifiers, deliver_due, notifiers_for
from mlops.notify.subscriptions import Entry
from mlops.records import CONTROLLER, Actor, Deployment
from mlops.rollout_spec import MetricSpec, NotifySpec, load_spec
from mlops.runtime import LoadedVersion, make_pipeline
from mlops.service import Service
from mlops.service.rollouts import Rollout, RolloutStep
from mlops.store.leases import FENCE_ENV, current_fence

log = logging.getLogger("mlops.controller")

DEFAULT_NOTIFY = NotifySpec(log=True)
"""Without `notify:` entries, alerts still reach the log."""

JudgeFactory = Callable[[dict[str, Any]], Judge]
"""Builds the analysis judge from a rollout spec's `analysis` section."""

NotifierFactory = Callable[[Iterable[Entry]], dict[str, Notifier]]
"""Builds a notifier per channel of `notify:` entries, keyed by channel (`notifiers_for`)."""


class Controller:
    def __init__(
        self,
        service: Service,
        judge_factory: JudgeFactory,
        *,
        clock: Callable[[], float] = time.time,
        metrics: MetricProviderFactory = PrometheusProvider,
        notifiers: NotifierFactory = notifiers_for,
        restores_in_child: bool = False,
    ) -> None:
        self.service = service
        self.restores_in_child = restores_in_child
        """Run data restores in a child process (`mlops data restore`): a controller inside
        the gateway must not hold the interpreter while it checksums 100 MB."""
        self.judge_factory = judge_factory
        self.clock = clock
        self._metrics_factory = metrics
        self._metrics: MetricProvider | None = None
        self._notifiers_factory = notifiers
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
        names = self.service.rollouts_in_progress()
        self.active = bool(names)
        done: list[str] = []
        for name in names:
            try:
                line = self._step(name)
            except LeaseLost as exc:
                log.warning("tick stopped: %s", exc.message)
                return done
            except Exception:
                log.exception("rollout of %s: tick failed; retrying next tick", name)
                continue
            if line:
                done.append(line)
        try:
            # Data restores that rollbacks marked (here, by a person, or before a crash), and
            # the data of deploys killed between their migration and their release.
            done += self._restore()
        except LeaseLost as exc:
            log.warning("restores not done: %s", exc.message)
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
            env = {**os.environ, "MLOPS_STORE": settings.store_url}
            env["MLOPS_HOME"] = str(settings.home)
            fence = current_fence()
            if fence is not None:  # the child writes under the leader's fence too
                env[FENCE_ENV] = fence.encode()
            child = subprocess.run(
                [sys.executable, "-m", "mlops", "data", "restore", "-o", "json"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                raise RuntimeError(child.stderr.strip() or f"exit {child.returncode}")
            outcomes = json.loads(child.stdout or "[]")
        return [f"data {o['resource']}: {o['status']}" for o in outcomes]

    def _step(self, name: str) -> str | None:
        now = self.clock()
        found = self.service.rollout_in_progress(name)
        if found is None:
            return None
        dep, rollout = found
        try:
            spec_file = load_spec(rollout.spec)
            spec = spec_file.plan()
            judge = self.judge_factory(spec_file.analysis)
        except InvalidInput as exc:
            return self._abandon(name, rollout, now, exc.message)
        entries = spec_file.notify or [DEFAULT_NOTIFY]
        for entry in entries:
            self._entries.setdefault(entry.model_dump_json(), entry)
        # Each event with who caused it: the controller, or the person whose command it is.
        events: list[tuple[Event, Actor]] = []
        stored = rollout.state
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
        step = RolloutStep(
            rollout=rollout,
            spec=spec,
            judge=judge,
            state=state,
            events=tuple(events),
            stable=stable,
            candidate=candidate,
            watermark=watermark,
            now=now,
            entries=entries,
            keep_warm_s=spec_file.keep_warm,
        )
        return self.service.advance_rollout(name, step)

    def _abandon(self, name: str, rollout: Rollout, now: float, problem: str) -> str | None:
        """End a rollout whose stored spec no longer validates (see `Service.abandon_rollout`);
        when the data's policy refuses to go back, it is held, and the log says why."""
        outcome = self.service.abandon_rollout(name, rollout, now, problem, [DEFAULT_NOTIFY])
        if outcome.held is not None:
            log.warning("rollout of %s: %s", name, outcome.held)
        return outcome.line

    def _with_metrics(
        self,
        judge: Judge,
        metrics: tuple[MetricSpec, ...],
        name: str,
        rollout: Rollout,
        analysis: dict[str, Any],
        now: float,
    ) -> Judge:
        """The judge with this tick's readings of the metrics that are due."""
        if self._metrics is None:
            self._metrics = self._metrics_factory()
        values = {
            "deployment": name,
            "stable_revision": str(rollout.stable_revision),
            "candidate_revision": str(rollout.candidate_revision),
        }
        readings = self._metrics.read_due(metrics, metric_state(analysis), values, now)
        return with_metrics(judge, [m.check() for m in metrics], readings, now)

    def _readiness(self, dep: Deployment) -> str | None:
        """Load the candidate's components as the gateway will run them, predict on sample
        rows (the example rows kept at registration, else rows of zeros shaped by the
        signature), and check the outputs: one per row, finite, among the known classes."""
        candidate, resources = self.service.candidate_of(dep)
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
        rollout: Rollout,
        watermark: int,
        labels_since: datetime,
        until: datetime,
    ) -> tuple[Measurements, Measurements, int]:
        """The stable and candidate measurements written since the last tick. The candidate's
        answers to mirrored requests count as its own: the copies of the stable release's
        requests it answered, with no user waiting."""
        found, top = self.service.measurement_increments(dep, watermark, labels_since, until)
        stable_rev, candidate_rev = rollout.stable_revision, rollout.candidate_revision
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
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
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
            self._notifiers = self._notifiers_factory(self._entries.values())
            self._notifier_keys = sorted(wanted)
        deliver_due(self.service.store, self._notifiers, _dt(self.clock()))

    def _adopt_waiting_entries(self) -> None:
        """Learn the `notify:` entries of alerts left waiting by rollouts this controller never
        stepped: after a restart, or on taking over from a leader that died, the rollout may
        have ended already, and its alerts would otherwise wait for good."""
        known = {channel_of(entry) for entry in self._entries.values()}
        unknown, specs = self.service.specs_with_undelivered(known)
        for spec in specs:
            try:
                entries = load_spec(spec).notify
            except InvalidInput:
                continue  # a spec that no longer reads cannot name its receivers
            for entry in entries:
                if channel_of(entry) in unknown:
                    self._entries.setdefault(entry.model_dump_json(), entry)


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
