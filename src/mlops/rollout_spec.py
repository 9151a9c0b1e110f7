"""Rollout specs: the YAML a user writes (or the defaults), validated, turned into a core plan.

```yaml
strategy: canary            # canary | linear | bluegreen | shadow | direct
steps:                      # canary: Argo Rollouts' vocabulary
  - set_weight: 5
  - pause: {duration: 1m, requests: 500}
  - set_weight: 50
  - pause: {}               # until `mlops promote`
linear: {step: 10, interval: 30s}
bluegreen: {holdback: 5, watch: 1m, preview: {mirror: 100, duration: 30s}}
shadow: {percent: 100, duration: 2m, then: canary}
keep_warm: 10m
progress_deadline: 10m
on_failure: rollback        # or pause
notify:
  - {webhook: "http://127.0.0.1:9000/hook", secret_env: HOOK_SECRET, events: [rolled_back]}
  - {slack: "https://hooks.slack.com/services/…"}
analysis:                   # the built-in analysis (mlops.core.analysis.AnalysisSpec) ...
  max_error_rate: 0.02
  metrics:                  # ... and absolute checks on PromQL queries (docs/analysis.md)
    - name: errors
      prometheus:
        address: http://127.0.0.1:9090
        query: 'sum(rate(mlops_errors_total{revision="{candidate_revision}"}[{interval}]))'
      max: 0.5
      interval: 30s
```

Every number must be finite and in range (durations at most `MAX_DURATION_S`, request counts at
most `MAX_REQUESTS`), and the plan a spec makes must have at most `MAX_PLAN_STEPS` steps, so a
spec that would break the controller is refused at deploy time, before it is stored. The YAML
itself is read by mlops.documents within `SPEC_LIMITS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from mlops.core.measure import ERROR_KINDS
from mlops.core.metric_checks import PLACEHOLDERS, MetricCheck, placeholders_in
from mlops.core.rollout import RolloutSpec
from mlops.core.strategies import (
    MAX_PLAN_STEPS,
    Mirror,
    Pause,
    SetWeight,
    Step,
    check_plan,
    plan_bluegreen,
    plan_canary,
    plan_linear,
    plan_shadow,
)
from mlops.documents import SPEC_LIMITS, clip, load_yaml, read_bytes, shown
from mlops.errors import InvalidInput

if TYPE_CHECKING:
    from mlops.core.analysis import AnalysisSpec

MAX_DURATION_S = 30 * 86_400.0
"""The longest duration a spec may give (30 days)."""
MAX_REQUESTS = 1_000_000_000
"""The largest request count a spec may give."""
MAX_METRICS = 32
"""Prometheus checks per rollout."""
MAX_ERRORS_SHOWN = 3
"""A refusal names at most this many problems."""

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*(\d{1,12}(?:\.\d{1,12})?)\s*(ms|s|m|h|d)?\s*")


def parse_duration(value: Any, *, maximum: float = MAX_DURATION_S) -> float:
    """Seconds from `90`, `"90s"`, `"1.5m"`, `"2h"`: finite, at most `maximum`."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) if not isinstance(value, int) or value < 2**53 else math.inf
    elif isinstance(value, str) and len(value) <= 64 and (match := _DURATION.fullmatch(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds is None:
        raise ValueError(
            f"{shown(value)} is not a duration: use seconds or a number with ms, s, m, h or d"
        )
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"a duration cannot be {shown(value)}")
    if seconds > maximum:
        raise ValueError(f"a duration cannot be longer than {maximum / 86_400:g} days")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Bound = Annotated[float, Field(allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100)]
Requests = Annotated[int, Field(ge=0, le=MAX_REQUESTS)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PauseSpec(_Model):
    duration: Duration | None = None
    requests: Requests | None = None


class StepSpec(_Model):
    set_weight: Percent | None = None
    pause: PauseSpec | None = None
    mirror: Percent | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StepSpec:
        given = [k for k in ("set_weight", "pause", "mirror") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("each step is exactly one of set_weight, pause or mirror")
        return self

    def to_step(self) -> Step:
        if self.set_weight is not None:
            return SetWeight(self.set_weight)
        if self.mirror is not None:
            return Mirror(self.mirror)
        assert self.pause is not None
        return Pause(self.pause.duration, self.pause.requests)


class LinearSpec(_Model):
    step: Annotated[float, Field(gt=0, le=100)] = 10
    interval: Duration = 30.0
    requests: Requests | None = None


class PreviewSpec(_Model):
    """Blue-green's pre-promotion analysis, on copies of live requests."""

    mirror: Annotated[float, Field(gt=0, le=100)] = 100
    duration: Duration = 30.0
    requests: Requests | None = None


class BlueGreenSpec(_Model):
    holdback: Annotated[float, Field(ge=0, lt=50)] = 5
    watch: Duration = 60.0
    requests: Requests | None = None
    preview: PreviewSpec | None = None


class ShadowSpec(_Model):
    percent: Annotated[float, Field(gt=0, le=100)] = 100
    duration: Duration = 120.0
    requests: Requests | None = None
    then: Literal["canary", "switch", "manual"] = "canary"


class NotifySpec(_Model):
    webhook: str | None = None
    slack: str | None = None
    log: bool | None = None
    secret_env: str | None = None
    events: list[str] = Field(
        default_factory=lambda: ["rolled_back", "promoted", "aborted", "paused"]
    )

    @field_validator("webhook", "slack")
    @classmethod
    def _deliverable_url(cls, value: str | None) -> str | None:
        from mlops.notify.checks import url_problem  # notify imports this module

        problem = url_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("secret_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        from mlops.notify.checks import secret_env_problem

        problem = secret_env_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("events")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        from mlops.notify.checks import events_problem

        problem = events_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_target(self) -> NotifySpec:
        given = [k for k in ("webhook", "slack", "log") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("each notify entry is exactly one of webhook, slack or log")
        if self.secret_env is not None and self.webhook is None:
            raise ValueError("secret_env signs a webhook: it goes with a webhook entry only")
        return self


class PrometheusSpec(_Model):
    address: str = Field(pattern=r"^https?://\S+$")
    query: str = Field(min_length=1)

    @field_validator("address")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("query")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = sorted(placeholders_in(value) - PLACEHOLDERS)
        if unknown:
            known = ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}: the query may use {known}")
        return value


class MetricSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=63)
    prometheus: PrometheusSpec
    min: Bound | None = None
    max: Bound | None = None
    interval: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] = 30.0
    failure_limit: int = Field(default=0, ge=0, le=MAX_REQUESTS)
    error_limit: int = Field(default=4, ge=0, le=MAX_REQUESTS)

    @model_validator(mode="after")
    def _a_range(self) -> MetricSpec:
        if self.min is None and self.max is None:
            raise ValueError("a metric needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    def check(self) -> MetricCheck:
        return MetricCheck(
            self.name, self.min, self.max, self.interval, self.failure_limit, self.error_limit
        )


_METRICS: TypeAdapter[list[MetricSpec]] = TypeAdapter(
    Annotated[list[MetricSpec], Field(max_length=MAX_METRICS)]
)


Ratio = Annotated[float, Field(gt=0, lt=1)]
Tolerance = Annotated[float, Field(gt=1, le=1_000)]
Seconds = Annotated[float, Field(ge=0, le=MAX_DURATION_S)]


class AnalysisSection(_Model):
    """The built-in analysis's settings (mlops.core.analysis.AnalysisSpec) as a spec gives them:
    typed, finite and in range. Cross-field rules are AnalysisSpec's own."""

    alpha: Ratio = 0.05
    alpha_promote: Ratio = 0.05
    error_tolerance: Tolerance | None = 1.25
    latency_tolerance: Tolerance | None = 1.25
    accuracy_tolerance: Tolerance | None = None
    latency_quantiles: Annotated[tuple[Ratio, ...], Field(max_length=8)] = (0.99,)
    error_kinds: Annotated[tuple[str, ...], Field(max_length=len(ERROR_KINDS))] = (
        "exception",
        "timeout",
        "invalid_output",
    )
    max_error_rate: Ratio | None = None
    max_p99_ms: Annotated[float, Field(gt=0, le=MAX_DURATION_S * 1000)] | None = None
    drift_margin: Ratio | None = None
    min_agreement: Ratio | None = None
    budget_s: Seconds = 600.0
    budget_requests: Annotated[int, Field(ge=1, le=MAX_REQUESTS)] = 2_000
    deadline_s: Seconds = 3_600.0
    min_samples: Annotated[int, Field(ge=0, le=MAX_REQUESTS)] = 100
    prior_c: Annotated[float, Field(gt=0, le=1_000_000)] = 50.0

    @field_validator("error_kinds")
    @classmethod
    def _known_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [kind for kind in kinds if kind not in ERROR_KINDS]
        if unknown:
            raise ValueError(
                f"{shown(unknown[0])} is not an error kind: choose among {', '.join(ERROR_KINDS)}"
            )
        if len(set(kinds)) != len(kinds):
            raise ValueError("an error kind is named twice")
        return kinds

    @model_validator(mode="after")
    def _deadline_after_budget(self) -> AnalysisSection:
        if self.deadline_s < self.budget_s:
            raise ValueError("the deadline (deadline_s) cannot come before the end of the budget")
        return self


def metric_specs(section: Mapping[str, Any]) -> tuple[MetricSpec, ...]:
    """The `metrics:` of a rollout spec's `analysis:` mapping, validated."""
    if section.get("metrics") is None:
        return ()
    try:
        metrics = _METRICS.validate_python(section["metrics"])
    except ValidationError as exc:
        raise InvalidInput(f"invalid rollout spec: {_explain(exc, 'analysis.metrics')}") from None
    seen: set[str] = set()
    for i, metric in enumerate(metrics):
        if metric.name in seen:
            raise InvalidInput(
                f"invalid rollout spec: analysis.metrics.{i}.name: {metric.name!r} is used twice"
            )
        seen.add(metric.name)
    return tuple(metrics)


def analysis_spec(section: Mapping[str, Any]) -> AnalysisSpec:
    """The built-in analysis's settings from a rollout spec's `analysis:` mapping (all keys but
    `metrics`), refusing unknown keys."""
    from mlops.core.analysis import AnalysisSpec  # scipy: too slow to import for every CLI call

    values = {k: v for k, v in section.items() if k != "metrics"}
    known = {f.name for f in fields(AnalysisSpec)}
    unknown = sorted((str(k) for k in set(values) - known), key=len)
    if unknown:
        raise InvalidInput(
            f"invalid rollout spec: analysis.{clip(unknown[0], 40)}: unknown setting"
        )
    try:
        checked = AnalysisSection.model_validate(values)
    except ValidationError as exc:
        raise InvalidInput(f"invalid rollout spec: {_explain(exc, 'analysis')}") from None
    try:
        return AnalysisSpec(**checked.model_dump(exclude_unset=True))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid rollout spec: analysis: {clip(str(exc))}") from None


class RolloutFile(_Model):
    strategy: Literal["direct", "canary", "linear", "bluegreen", "shadow"] = "canary"
    steps: Annotated[list[StepSpec], Field(max_length=MAX_PLAN_STEPS - 1)] | None = None
    linear: LinearSpec = LinearSpec()
    bluegreen: BlueGreenSpec = BlueGreenSpec()
    shadow: ShadowSpec = ShadowSpec()
    analysis: dict[str, Any] = Field(default_factory=dict)
    keep_warm: Duration = 600.0
    progress_deadline: Duration = 600.0
    on_failure: Literal["rollback", "pause"] = "rollback"
    notify: list[NotifySpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _steps_only_for_canary(self) -> RolloutFile:
        if self.steps is not None and self.strategy != "canary":
            raise ValueError(f"steps are for the canary strategy, not {self.strategy}")
        return self

    def plan(self) -> RolloutSpec:
        steps: tuple[Step, ...]
        if self.strategy == "canary":
            steps = plan_canary(tuple(s.to_step() for s in self.steps) if self.steps else None)
        elif self.strategy == "linear":
            steps = plan_linear(self.linear.step, self.linear.interval, self.linear.requests)
        elif self.strategy == "bluegreen":
            b = self.bluegreen
            preview = b.preview and (b.preview.mirror, b.preview.duration, b.preview.requests)
            steps = plan_bluegreen(b.holdback, b.watch, b.requests, preview or None)
        elif self.strategy == "shadow":
            s = self.shadow
            steps = plan_shadow(s.percent, s.duration, s.requests, s.then)
        else:
            steps = (SetWeight(100),)
        check_plan(steps)
        return RolloutSpec(self.strategy, steps, self.progress_deadline, self.on_failure)

    def metrics(self) -> tuple[MetricSpec, ...]:
        return metric_specs(self.analysis)


def _explain(error: ValidationError, prefix: str = "") -> str:
    """Where and what, for the first few problems; never the input itself."""
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    lines = []
    for item in problems[:MAX_ERRORS_SHOWN]:
        path = [*([prefix] if prefix else []), *(clip(str(p), 40) for p in item["loc"])]
        lines.append(f"{'.'.join(path) or 'spec'}: {clip(item['msg'])}")
    if len(problems) > MAX_ERRORS_SHOWN:
        lines.append(f"and {len(problems) - MAX_ERRORS_SHOWN} more")
    return "; ".join(lines)


def load_spec(data: dict[str, Any] | None = None, *, strategy: str | None = None) -> RolloutFile:
    """A validated spec from parsed YAML (or the defaults); `strategy` overrides the file's.
    It is checked whole: its analysis, its metrics and the plan it makes."""
    if data is not None and not isinstance(data, Mapping):
        raise InvalidInput("invalid rollout spec: a spec is a mapping of fields")
    raw = dict(data or {})
    if strategy is not None:
        raw["strategy"] = strategy
    try:
        spec = RolloutFile.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(f"invalid rollout spec: {_explain(exc)}") from None
    if set(spec.analysis) - {"metrics"}:
        analysis_spec(spec.analysis)
    spec.metrics()
    try:
        spec.plan()
    except InvalidInput as exc:
        raise InvalidInput(f"invalid rollout spec: {exc.message}") from None
    return spec


def read_spec_file(path: str | Path, *, strategy: str | None = None) -> RolloutFile:
    source = Path(path)
    what = f"the rollout spec {source}"
    return spec_from_text(read_bytes(source, what, SPEC_LIMITS), what, strategy=strategy)


def spec_from_text(text: bytes | str, what: str, *, strategy: str | None = None) -> RolloutFile:
    """A spec from YAML (or JSON) text, read by the one safe loader within its limits."""
    data = load_yaml(text, what, SPEC_LIMITS)
    if data is not None and not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a mapping of fields")
    return load_spec(data, strategy=strategy)
