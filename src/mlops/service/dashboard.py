"""What the dashboard shows, read in as few queries as it can: every deployment with its
recent traffic (the overview), and one deployment's rollout with its analysis trajectory and
per-revision series over time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from mlops.core.limits import LIST_MAX
from mlops.core.measure import quantile_ms
from mlops.core.snapshot_status import RESTORE_FAILED
from mlops.records import DeploymentStatus
from mlops.service.base import deployment_of
from mlops.service.rollouts import RolloutOps
from mlops.store.measurements import MeasurementRow

OVERVIEW_WINDOW_S = 300.0
OVERVIEW_BUCKET_S = 30.0
PAGE_WINDOW_S = 900.0
PAGE_BUCKET_S = 10.0


@dataclass
class Series:
    """Requests, errors by kind and latency quantiles per time bucket, from `start`."""

    start: datetime
    bucket_s: float
    requests: list[int]
    errors: list[dict[str, int]]
    p50_ms: list[float | None]
    p99_ms: list[float | None]

    @property
    def total_requests(self) -> int:
        return sum(self.requests)

    @property
    def total_errors(self) -> int:
        return sum(sum(e.values()) for e in self.errors)

    def rate(self, buckets: int = 2) -> float:
        """Requests per second over the last complete `buckets`."""
        seen = self.requests[-buckets - 1 : -1] or self.requests
        return sum(seen) / (len(seen) * self.bucket_s)

    def p99_recent(self) -> float | None:
        return next((v for v in reversed(self.p99_ms) if v is not None), None)


Point = tuple[datetime, int, Mapping[str, int], Mapping[str, int]]
"""One measurement: when its period ended, requests, errors by kind, latency bins."""


def series(points: Iterable[Point], start: datetime, end: datetime, bucket_s: float) -> Series:
    n = max(1, int((end - start).total_seconds() // bucket_s) + 1)
    requests = [0] * n
    errors: list[dict[str, int]] = [{} for _ in range(n)]
    bins: list[dict[int, int]] = [{} for _ in range(n)]
    for ended_at, count, errs, latency in points:
        i = int((ended_at - start).total_seconds() // bucket_s)
        if not 0 <= i < n:
            continue
        requests[i] += count
        for kind, k in errs.items():
            errors[i][kind] = errors[i].get(kind, 0) + k
        for b, k in latency.items():
            bins[i][int(b)] = bins[i].get(int(b), 0) + k
    return Series(
        start,
        bucket_s,
        requests,
        errors,
        [quantile_ms(b, 0.5) for b in bins],
        [quantile_ms(b, 0.99) for b in bins],
    )


def _parsed(text: bytes) -> dict[str, int]:
    return {} if text == b"{}" else dict(orjson.loads(text))


@dataclass
class OverviewEntry:
    status: DeploymentStatus
    split: dict[str, Any] | None
    traffic: Series
    attention: list[str] = field(default_factory=list)


@dataclass
class RolloutStory:
    """A deployment's latest rollout, in progress or ended: its spec's steps, its verdict and
    what its analysis showed at each tick."""

    candidate_revision: int
    stable_revision: int
    strategy: str
    phase: str
    steps: list[dict[str, Any]]
    state: dict[str, Any]
    verdict: dict[str, Any] | None
    started_at: datetime
    ended_at: datetime | None
    points: list[tuple[datetime, dict[str, Any]]]


class DashboardOps(RolloutOps):
    def overview(
        self, *, window_s: float = OVERVIEW_WINDOW_S, bucket_s: float = OVERVIEW_BUCKET_S
    ) -> list[OverviewEntry]:
        end = self.clock()
        start = end - timedelta(seconds=window_s)
        statuses = self.status()
        with self.store.read() as tx:
            deps = {d.name: d for d in tx.deployments(limit=None)}
            rows = tx.served_since(start)
            failed = tx.snapshot_rows(None, status=RESTORE_FAILED, limit=LIST_MAX)
        restores: dict[int, list[str]] = {}
        for snap in failed:
            why = f"the restore of {snap.resource} (snapshot {snap.id}, r{snap.revision}) failed"
            restores.setdefault(snap.deployment_id, []).append(why)
        by_dep: dict[int, list[Point]] = {}
        for dep_id, ended_at, requests, errors, latency in rows:
            point = (ended_at, requests, _parsed(errors), _parsed(latency))
            by_dep.setdefault(dep_id, []).append(point)
        out = []
        for st in statuses:
            dep = deps.get(st.deployment)
            if dep is None:
                continue
            traffic = series(by_dep.get(dep.id, ()), start, end, bucket_s)
            needs = attention(st) + restores.get(dep.id, [])
            out.append(OverviewEntry(st, dep.routes, traffic, needs))
        return out

    def rollout_story(self, deployment: str) -> RolloutStory | None:
        with self.store.read() as tx:
            dep = deployment_of(tx, deployment)
            row = tx.latest_rollout(dep.id)
            if row is None:
                return None
            points = tx.analysis_points(row.id)
        state = row.state.get("rollout", {})
        return RolloutStory(
            candidate_revision=row.candidate_revision,
            stable_revision=row.stable_revision,
            strategy=row.strategy,
            phase=str(state.get("phase", row.phase)),
            steps=_steps(row.spec),
            state=state,
            verdict=row.verdict,
            started_at=row.started_at,
            ended_at=row.ended_at,
            points=points,
        )

    def revision_series(
        self,
        deployment: str,
        *,
        window_s: float = PAGE_WINDOW_S,
        bucket_s: float = PAGE_BUCKET_S,
    ) -> dict[tuple[int, str], Series]:
        """Per (revision, role) series over the last `window_s`."""
        end = self.clock()
        start = end - timedelta(seconds=window_s)
        with self.store.read() as tx:
            dep = deployment_of(tx, deployment)
            rows = tx.measurement_rows(dep.id, start)
        parts: dict[tuple[int, str], list[MeasurementRow]] = {}
        for row in rows:
            parts.setdefault((row.revision, row.role), []).append(row)
        return {
            key: series(
                ((r.ended_at, r.requests, r.errors, r.latency) for r in part), start, end, bucket_s
            )
            for key, part in sorted(parts.items())
        }


def attention(st: DeploymentStatus) -> list[str]:
    """What about a deployment needs a person."""
    out = []
    rollout = st.rollout or {}
    if rollout.get("paused_by") == "failure":
        out.append(
            f"a rollback of r{rollout.get('candidate_revision')} is held by the data's policy: "
            "promote it, or roll it back once the policy allows"
        )
    elif rollout.get("phase") == "paused":
        out.append(f"rollout paused at step {rollout.get('step')} of {rollout.get('steps')}")
    if st.quarantined:
        out.append("serving quarantined " + ", ".join(st.quarantined))
    return out


def _steps(spec: dict[str, Any]) -> list[dict[str, Any]]:
    from mlops.errors import InvalidInput
    from mlops.rollout_spec import load_spec

    try:
        plan = load_spec(spec).plan()
    except InvalidInput:
        return []
    return [_step_dict(s) for s in plan.steps]


def _step_dict(step: Any) -> dict[str, Any]:
    shown = {k: v for k, v in asdict(step).items() if v is not None}
    return {"kind": type(step).__name__, **shown}
