"""Rollout specs: the YAML a user writes (or the defaults), validated, turned into a core plan.

```yaml
strategy: canary            # canary | linear | bluegreen | shadow | direct
steps:                      # canary: Argo Rollouts' vocabulary
  - set_weight: 5
  - pause: {duration: 1m, requests: 500}
  - set_weight: 50
  - pause: {}               # until `mlops promote`
linear: {step: 10, interval: 30s}
bluegreen: {holdback: 5, watch: 1m}
shadow: {percent: 100, duration: 2m, then: canary}
keep_warm: 10m
progress_deadline: 10m
on_failure: rollback        # or pause
notify:
  - {webhook: "http://127.0.0.1:9000/hook", secret_env: HOOK_SECRET, events: [rolled_back]}
  - {slack: "https://hooks.slack.com/services/…"}
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

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


class BlueGreenSpec(_Model):
    holdback: Annotated[float, Field(ge=0, lt=50)] = 5
    watch: Duration = 60.0
    requests: int | None = Field(default=None, ge=0)


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

    @model_validator(mode="after")
    def _one_target(self) -> NotifySpec:
        given = [k for k in ("webhook", "slack", "log") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("each notify entry is exactly one of webhook, slack or log")
        return self


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
            steps = plan_bluegreen(b.holdback, b.watch, b.requests)
        elif self.strategy == "shadow":
            s = self.shadow
            steps = plan_shadow(s.percent, s.duration, s.requests, s.then)
        else:
            steps = (SetWeight(100),)
        check_plan(steps)
        return RolloutSpec(self.strategy, steps, self.progress_deadline, self.on_failure)


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def load_spec(data: dict[str, Any] | None = None, *, strategy: str | None = None) -> RolloutFile:
    """A validated spec from parsed YAML (or the defaults); `strategy` overrides the file's."""
    raw = dict(data or {})
    if strategy is not None:
        raw["strategy"] = strategy
    try:
        return RolloutFile.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(f"invalid rollout spec: {_explain(exc)}") from None


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
