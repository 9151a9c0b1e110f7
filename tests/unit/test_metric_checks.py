import json
from collections.abc import Mapping, Sequence
from typing import Any

from mlops.core.metric_checks import (
    MetricCheck,
    NoData,
    QueryError,
    Reading,
    assess_metrics,
    due_metrics,
    placeholders_in,
    prometheus_duration,
    render_query,
)

ERRORS = MetricCheck("error_rate", max=0.05, interval_s=10, failure_limit=1, error_limit=2)
SHARE = MetricCheck("positive_share", min=0.2, max=0.8, interval_s=10)


def run(
    checks: list[MetricCheck], readings: Sequence[Mapping[str, Reading]], every: float = 10
) -> tuple[dict[str, Any], Any]:
    """Assess one batch of readings per interval, from time 0."""
    state: dict[str, Any] = {}
    verdict: Any = None
    for i, batch in enumerate(readings):
        state, verdict = assess_metrics(checks, state, batch, i * every)
    return state, verdict


def test_a_reading_in_range_passes_with_its_number() -> None:
    state, verdict = run([ERRORS], [{"error_rate": 0.01}])
    assert verdict.outcome == "pass"
    assert verdict.reasons == ("prometheus metric error_rate = 0.01, within max 0.05",)
    assert state["error_rate"]["at"] == 0
    json.dumps(state, allow_nan=False)


def test_failures_past_the_limit_fail_with_the_value_and_the_limit() -> None:
    _, verdict = run([ERRORS], [{"error_rate": 0.31}])
    assert verdict.outcome == "inconclusive"  # one failure is allowed
    assert verdict.reasons == (
        "prometheus metric error_rate = 0.31 > max 0.05 (1 failure; failure_limit 1)",
    )
    state, verdict = run([ERRORS], [{"error_rate": 0.31}, {"error_rate": 0.01}])
    assert verdict.outcome == "pass"  # the latest reading is in range
    state, verdict = run([ERRORS], [{"error_rate": 0.31}, {"error_rate": 0.01}, {"error_rate": 1}])
    assert verdict.outcome == "fail"
    assert verdict.reasons == (
        "prometheus metric error_rate = 1 > max 0.05 (2 failures; failure_limit 1)",
    )
    assert state["error_rate"]["failures"] == 2


def test_below_min_and_infinite_values_are_out_of_range() -> None:
    _, verdict = run([SHARE], [{"positive_share": 0.1}])
    assert verdict.outcome == "fail"
    assert "positive_share = 0.1 < min 0.2 (1 failure; failure_limit 0)" in verdict.reasons[0]
    state, verdict = run([SHARE], [{"positive_share": float("inf")}])
    assert verdict.outcome == "fail"
    assert "= inf > max 0.8" in verdict.reasons[0]
    json.dumps(state, allow_nan=False)


def test_no_data_is_never_success() -> None:
    _, verdict = run([SHARE], [{"positive_share": NoData()}] * 20)
    assert verdict.outcome == "inconclusive"
    assert verdict.reasons == (
        "prometheus metric positive_share: no data (the query returned no series)",
    )
    _, verdict = run([SHARE], [{"positive_share": float("nan")}])
    assert verdict.outcome == "inconclusive"
    assert "no data (the query returned NaN)" in verdict.reasons[0]
    _, verdict = assess_metrics([SHARE], {}, {}, 0.0)
    assert verdict == verdict.__class__(
        "inconclusive", ("prometheus metric positive_share: not read yet",)
    )


def test_consecutive_query_errors_past_the_limit_fail_with_the_error() -> None:
    refused = QueryError("http://127.0.0.1:9: ConnectError: [Errno 111] Connection refused")
    state, verdict = run([ERRORS], [{"error_rate": refused}] * 2)
    assert verdict.outcome == "inconclusive"
    assert state["error_rate"]["errors"] == 2
    _, verdict = run([ERRORS], [{"error_rate": refused}] * 2 + [{"error_rate": 0.01}])
    assert verdict.outcome == "pass"  # a good reading resets the count
    _, verdict = run([ERRORS], [{"error_rate": refused}] * 2 + [{"error_rate": NoData()}])
    assert verdict.outcome == "inconclusive"
    state, verdict = run([ERRORS], [{"error_rate": refused}] * 3)
    assert verdict.outcome == "fail"
    assert verdict.reasons == (
        "prometheus metric error_rate: query failed (3 in a row; error_limit 2): "
        "http://127.0.0.1:9: ConnectError: [Errno 111] Connection refused",
    )


def test_a_metric_is_read_once_per_interval_and_a_failed_one_no_more() -> None:
    checks = [ERRORS, SHARE]
    assert due_metrics(checks, {}, 0) == ("error_rate", "positive_share")
    state, _ = assess_metrics(checks, {}, {"error_rate": 0.01, "positive_share": 0.5}, 100)
    assert due_metrics(checks, state, 109.9) == ()
    state, verdict = assess_metrics(checks, state, {"error_rate": 0.9}, 105)
    assert state["error_rate"]["at"] == 100  # not due: the reading does not count
    assert verdict.outcome == "pass"
    assert due_metrics(checks, state, 110) == ("error_rate", "positive_share")
    state, _ = assess_metrics(checks, state, {"positive_share": 0.9}, 110)
    assert due_metrics(checks, state, 1_000) == ("error_rate",)


def test_a_failing_metric_comes_first_and_the_others_still_report() -> None:
    _, verdict = run([ERRORS, SHARE], [{"error_rate": 0.01, "positive_share": 0.95}])
    assert verdict.outcome == "fail"
    assert verdict.reasons == (
        "prometheus metric positive_share = 0.95 > max 0.8 (1 failure; failure_limit 0)",
        "prometheus metric error_rate = 0.01, within max 0.05",
    )
    _, verdict = run([ERRORS, SHARE], [{"error_rate": 0.01, "positive_share": NoData()}])
    assert verdict.outcome == "inconclusive"


def test_query_templates() -> None:
    query = (
        'sum(rate(mlops_requests_total{deployment="{deployment}",'
        'revision="{candidate_revision}"}[{interval}])) / {stable_revision}'
    )
    assert placeholders_in(query) == {
        "deployment",
        "candidate_revision",
        "interval",
        "stable_revision",
    }
    assert placeholders_in('up{job="x"} + rate(x{a=~"b{2}"}[1m])') == set()
    values = {
        "deployment": "api",
        "candidate_revision": "7",
        "stable_revision": "6",
        "interval": "30s",
    }
    assert render_query(query, values) == (
        'sum(rate(mlops_requests_total{deployment="api",revision="7"}[30s])) / 6'
    )
    assert [prometheus_duration(s) for s in (30, 1, 0.25, 90, 1.5)] == [
        "30s",
        "1s",
        "250ms",
        "90s",
        "1500ms",
    ]
