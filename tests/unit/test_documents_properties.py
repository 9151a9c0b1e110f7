"""Property tests of the rollout spec and params loaders against what attackers send: anchors
and aliases, deep nesting, huge and non-finite numbers, long strings, random keys and values
around the real schema. Every document either loads (and then makes a bounded plan) or is
refused with InvalidInput (exit 5) whose short message names the document or the field; each
example stays under a memory bound (tracemalloc's peak, not a clock)."""

from __future__ import annotations

import json
import math
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mlops.core.analysis  # noqa: F401 - imported by the spec loader on first use: not timed
from mlops.core.lookup import LookupSpec
from mlops.core.strategies import MAX_PLAN_STEPS, Pause, SetWeight
from mlops.errors import InvalidInput
from mlops.registry.params import Params, parse_params
from mlops.rollout_spec import read_spec_file

PEAK_BYTES = 32 << 20
"""No example may allocate more than this at once (a billion laughs would take gigabytes)."""
MESSAGE_CAP = 600

SETTINGS = settings(
    max_examples=150,
    deadline=10_000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Raw(str):
    """A YAML token written as is: `.nan`, `*a`, `&a [...]`, a 5,000-digit number."""


def laughs(levels: int) -> str:
    items = ['&l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        items.append(f"&l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]")
    return "[" + ", ".join(items) + "]"


def render(value: Any) -> str:
    """Flow-style YAML (a superset of JSON) with raw tokens spliced in."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{render(k)}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value, ensure_ascii=False)


RAW = st.sampled_from(
    [
        ".nan",
        ".inf",
        "-.inf",
        "1e400",
        "-1e400",
        "9" * 5000,
        "-" + "9" * 30,
        "0x7fffffffffffffffffff",
        "*a",
        "&a 5",
        "&b [1, 2]",
        "!!python/name:os.system ''",
        "!!binary aGVsbG8=",
        "!!set {a, b}",
        "2024-01-01",
        "~",
        "yes",
        "1_000",
        "[" * 40 + "]" * 40,
    ]
).map(Raw) | st.integers(2, 9).map(lambda n: Raw(laughs(n)))

NUMBERS = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 0.5, 100, 1e-7, 5, 50, 99.999, 1e9, 2**63, -1])
)
DURATIONS = NUMBERS | st.sampled_from(["1s", "1m", "250ms", "2h", "1d", "99999999d", "soon", ""])
TEXT = st.text(max_size=20) | st.text(min_size=1, max_size=5).map(lambda s: s * 20_000)
SCALARS = NUMBERS | TEXT | RAW | st.booleans() | st.none()
ANY = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def around(schema: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[Any, Any]]:
    """Mappings with some of the schema's keys (well or badly typed) and a few foreign ones."""
    known = st.fixed_dictionaries({}, optional={k: v | ANY for k, v in schema.items()})
    foreign = st.dictionaries(st.text(max_size=12) | RAW, ANY, max_size=2)
    return st.tuples(known, foreign, st.booleans()).map(
        lambda t: {**t[0], **t[1]} if t[2] else t[0]
    )


PAUSE = around({"duration": DURATIONS, "requests": NUMBERS})
STEP = (
    around({"set_weight": NUMBERS})
    | around({"pause": PAUSE})
    | around({"mirror": NUMBERS})
    | st.just({"set_weight": 5})
)
ANALYSIS = around(
    {
        "alpha": NUMBERS,
        "alpha_promote": NUMBERS,
        "error_tolerance": NUMBERS | st.none(),
        "latency_tolerance": NUMBERS,
        "accuracy_tolerance": NUMBERS,
        "latency_quantiles": st.lists(NUMBERS, max_size=3),
        "error_kinds": st.lists(
            st.sampled_from(["exception", "timeout", "invalid_output", "rejected", "boom"]) | RAW,
            max_size=4,
        ),
        "max_error_rate": NUMBERS,
        "max_p99_ms": NUMBERS,
        "drift_margin": NUMBERS,
        "min_agreement": NUMBERS,
        "budget_s": NUMBERS,
        "budget_requests": NUMBERS,
        "deadline_s": NUMBERS,
        "min_samples": NUMBERS,
        "prior_c": NUMBERS,
    }
)
SPEC = around(
    {
        "strategy": st.sampled_from(["canary", "linear", "bluegreen", "shadow", "direct", "x"]),
        "steps": st.lists(STEP, max_size=5)
        | st.integers(0, 450).map(lambda n: [{"set_weight": 5}] * n),
        "linear": around({"step": NUMBERS, "interval": DURATIONS, "requests": NUMBERS}),
        "bluegreen": around({"holdback": NUMBERS, "watch": DURATIONS, "requests": NUMBERS}),
        "shadow": around(
            {"percent": NUMBERS, "duration": DURATIONS, "then": st.sampled_from(["canary", "x"])}
        ),
        "analysis": ANALYSIS,
        "keep_warm": DURATIONS,
        "progress_deadline": DURATIONS,
        "on_failure": st.sampled_from(["rollback", "pause", "panic"]),
    }
)
PARAMS = around(
    {
        "threshold": NUMBERS,
        "labels": st.dictionaries(st.text(max_size=4) | st.integers(), SCALARS, max_size=4),
        "lookup": around(
            {
                "resource": st.sampled_from(["features", "1bad"]) | TEXT,
                "table": st.sampled_from(["t", ""]) | TEXT,
                "key": st.sampled_from(["id"]),
                "columns": st.lists(st.sampled_from(["a", "b", "id", "a"]) | TEXT, max_size=3),
                "inputs": st.lists(st.sampled_from(["id", "x"]), max_size=2),
                "missing": st.sampled_from(["error", "nan", "maybe"]),
            }
        ),
    }
)


@contextmanager
def bounded_memory() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak {peak:,} bytes"


def check_refusal(exc: InvalidInput, names: tuple[str, ...]) -> None:
    event(f"refused: {exc.message.split(':')[1][:40] if ':' in exc.message else exc.message[:40]}")
    assert exc.exit_code == 5
    assert len(exc.message) < MESSAGE_CAP, exc.message[:2000]
    assert any(name in exc.message for name in names), exc.message


def as_text(document: dict[Any, Any], json_form: bool) -> str:
    if json_form:
        try:
            return json.dumps(document, allow_nan=True, ensure_ascii=False)
        except (TypeError, ValueError):
            pass
    return render(document)


@SETTINGS
@given(document=SPEC, json_form=st.booleans())
def test_spec_loader_loads_or_refuses_naming_the_field(
    tmp_path: Path, document: dict[Any, Any], json_form: bool
) -> None:
    path = tmp_path / "rollout.yaml"
    path.write_text(as_text(document, json_form), encoding="utf-8")
    with bounded_memory():
        try:
            spec = read_spec_file(path)
            plan = spec.plan()
        except InvalidInput as exc:
            check_refusal(exc, (str(path), "invalid rollout spec: "))
            return
    event("loaded")
    assert 0 < len(plan.steps) <= MAX_PLAN_STEPS
    assert math.isfinite(plan.progress_deadline_s)
    assert math.isfinite(spec.keep_warm)
    for step in plan.steps:
        if isinstance(step, SetWeight):
            assert 0 <= step.percent <= 100
        if isinstance(step, Pause) and step.seconds is not None:
            assert math.isfinite(step.seconds)


@SETTINGS
@given(document=PARAMS, json_form=st.booleans())
def test_params_loader_loads_or_refuses_naming_the_file(
    document: dict[Any, Any], json_form: bool
) -> None:
    what = "params.yaml"
    data = as_text(document, json_form).encode()
    with bounded_memory():
        try:
            loaded = parse_params(data, what)
        except InvalidInput as exc:
            check_refusal(exc, (what,))
            return
    event("loaded")
    assert isinstance(loaded, Params | LookupSpec)
    if isinstance(loaded, Params) and loaded.threshold is not None:
        assert 0 < loaded.threshold < 1


@settings(max_examples=60, deadline=10_000)
@given(raw=st.binary(max_size=200) | st.binary(min_size=1, max_size=2).map(lambda b: b * 600_000))
def test_any_bytes_as_params_load_or_are_refused(raw: bytes) -> None:
    with bounded_memory():
        try:
            parse_params(raw, "blob")
        except InvalidInput as exc:
            check_refusal(exc, ("blob",))
