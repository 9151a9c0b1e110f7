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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
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

from mlops.core.metric_checks import PLACEHOLDERS, MetricCheck, placeholders_in
from mlops.core.rollout import RolloutSpec
from mlops.core.strategies import (
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
from mlops.errors import InvalidInput, UnreadableFile

if TYPE_CHECKING:
    from mlops.core.analysis import AnalysisSpec

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"90s"`, `"1.5m"`, `"2h"`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(f"{value!r} is not a duration: use seconds or a number with ms, s, m, h or d")


Duration = Annotated[float, BeforeValidator(parse_duration)]
Bound = Annotated[float, Field(allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PauseSpec(_Model):
    duration: Duration | None = None
    requests: int | None = Field(default=None, ge=0)


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
    requests: int | None = Field(default=None, ge=0)


class PreviewSpec(_Model):
    """Blue-green's pre-promotion analysis, on copies of live requests."""

    mirror: Annotated[float, Field(gt=0, le=100)] = 100
    duration: Duration = 30.0
    requests: int | None = Field(default=None, ge=0)


class BlueGreenSpec(_Model):
    holdback: Annotated[float, Field(ge=0, lt=50)] = 5
    watch: Duration = 60.0
    requests: int | None = Field(default=None, ge=0)
    preview: PreviewSpec | None = None


class ShadowSpec(_Model):
    percent: Annotated[float, Field(gt=0, le=100)] = 100
    duration: Duration = 120.0
    requests: int | None = Field(default=None, ge=0)
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
    failure_limit: int = Field(default=0, ge=0)
    error_limit: int = Field(default=4, ge=0)

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


_METRICS: TypeAdapter[list[MetricSpec]] = TypeAdapter(list[MetricSpec])


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
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInput(f"invalid rollout spec: analysis.{unknown[0]}: unknown setting")
    if "latency_quantiles" in values:
        values["latency_quantiles"] = tuple(values["latency_quantiles"])
    if "error_kinds" in values:
        values["error_kinds"] = tuple(values["error_kinds"])
    try:
        return AnalysisSpec(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"invalid rollout spec: analysis: {exc}") from None


class RolloutFile(_Model):
    strategy: Literal["direct", "canary", "linear", "bluegreen", "shadow"] = "canary"
    steps: list[StepSpec] | None = None
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
    lines = []
    for item in error.errors():
        where = ".".join([*([prefix] if prefix else []), *(str(p) for p in item["loc"])])
        where = where or "spec"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def load_spec(data: dict[str, Any] | None = None, *, strategy: str | None = None) -> RolloutFile:
    """A validated spec from parsed YAML (or the defaults); `strategy` overrides the file's."""
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
    return spec


def read_spec_file(path: str | Path, *, strategy: str | None = None) -> RolloutFile:
    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise UnreadableFile(
            f"cannot read the rollout spec {source}: {exc.strerror or exc}"
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the rollout spec {source} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise InvalidInput(f"the rollout spec {source} must be a mapping of fields")
    return load_spec(data, strategy=strategy)
