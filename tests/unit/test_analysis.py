import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from mlops.core import analysis
from mlops.core.analysis import (
    AnalysisSpec,
    SequentialState,
    assess,
    beta_binomial_log_e,
    binomial_confidence,
    js_distance_bounds,
    log_e_above,
    log_e_below,
    prior_log_weights,
    ratio_grid,
    ratio_log_lr,
)
from mlops.core.measure import Measurements, latency_bin
from mlops.errors import InvalidInput

RATIOS = ratio_grid()
ONLY_ERRORS = AnalysisSpec(latency_tolerance=None)


def measurements(
    revision: int,
    requests: int,
    errors: int = 0,
    *,
    latency: dict[int, int] | None = None,
    predictions: dict[str, int] | None = None,
    labelled: int = 0,
    correct: int = 0,
) -> Measurements:
    return Measurements(
        "fraud-api",
        revision,
        requests=requests,
        errors={"exception": errors},
        latency=latency or {},
        predictions=predictions or {},
        labelled=labelled,
        correct=correct,
    )


def test_public_names_exist() -> None:
    assert all(hasattr(analysis, name) for name in analysis.__all__)


@pytest.mark.parametrize(("k", "n"), [(0, 40), (3, 40), (12, 100), (40, 300)])
@pytest.mark.parametrize("side", ["two", "above", "below"])
def test_beta_binomial_e_value_matches_direct_integration(k: int, n: int, side: str) -> None:
    p0, a, b = 0.05, 2.5, 47.5
    lo, hi = {"two": (0.0, 1.0), "above": (p0, 1.0), "below": (0.0, p0)}[side]
    prior = stats.beta(a, b)
    mass = prior.cdf(hi) - prior.cdf(lo)

    def ratio(t: float) -> float:
        return float(
            math.exp(k * math.log(t / p0) + (n - k) * math.log((1 - t) / (1 - p0)))
            * prior.pdf(t)
            / mass
        )

    direct, _ = integrate.quad(ratio, lo, hi, points=[p0, k / n] if lo < k / n < hi else [p0])
    got = beta_binomial_log_e(k, n, p0, a, b, side)  # type: ignore[arg-type]
    assert got == pytest.approx(math.log(direct), abs=1e-6)


def test_mixture_over_ratios_is_the_product_of_per_interval_likelihood_ratios() -> None:
    # Three intervals at three shares; the e-value computed event by event, by hand.
    intervals = [(0.01, [1, 0, 0]), (0.05, [0, 1, 1, 0]), (0.2, [1, 1, 0, 0, 0])]
    log_prior = prior_log_weights(RATIOS, 0.01, 50.0)
    log_lr = sum(
        ratio_log_lr(RATIOS, share, sum(events), len(events)) for share, events in intervals
    )
    r = np.asarray(RATIOS)
    direct = np.ones_like(r)
    for share, events in intervals:
        theta = share * r / (share * r + 1 - share)
        for x in events:
            direct *= (theta / share) if x else (1 - theta) / (1 - share)
    above = r > 1
    w = np.exp(log_prior)[above]
    expected = math.log(float((w * direct[above]).sum() / w.sum()))
    assert float(log_e_above(RATIOS, log_prior, np.asarray(log_lr))) == pytest.approx(expected)


@pytest.mark.parametrize(("k", "n"), [(5, 50), (20, 200), (60, 700), (3, 100), (100, 1000)])
def test_grid_mixture_matches_the_closed_form_at_a_constant_share(k: int, n: int) -> None:
    c, share = 50.0, 0.05
    grid = float(
        log_e_above(RATIOS, prior_log_weights(RATIOS, share, c), ratio_log_lr(RATIOS, share, k, n))
    )
    closed = beta_binomial_log_e(k, n, share, c * share, c * (1 - share), "above")
    assert grid == pytest.approx(closed, abs=0.1)


def test_one_sided_only_more_candidate_events_count_against_it() -> None:
    log_prior = prior_log_weights(RATIOS, 0.05, 50.0)
    # 1,000 events at share 5 %: 50 expected from the candidate.
    log_e = [float(log_e_above(RATIOS, log_prior, ratio_log_lr(RATIOS, 0.05, k, 1000)))
             for k in (0, 20, 50, 80, 120)]  # fmt: skip
    assert log_e[0] < log_e[1] < 0  # fewer events: evidence for the candidate, never against
    assert log_e[2] < 0.5
    assert log_e[3] > math.log(20)
    assert log_e[4] > log_e[3]
    # A candidate with far fewer errors never fails, however much data.
    state = SequentialState.start(ONLY_ERRORS, None, 0.05)
    for _ in range(50):
        state, verdict = assess(
            ONLY_ERRORS, state, measurements(1, 9500, 950), measurements(2, 500, 0), elapsed_s=1
        )
        assert verdict.outcome != "fail"


def _aa_rejection_rate(misread: float = 1.0, runs: int = 400, seed: int = 7) -> float:
    """Share of A/A runs whose e-process reaches 1/alpha = 20 at any event, over canary steps.

    Each event comes from the candidate with its traffic share; the test is told the share
    times `misread`.
    """
    rng = np.random.default_rng(seed)
    steps = [(0.01, 400), (0.05, 400), (0.2, 400), (0.5, 400)]
    log_prior = prior_log_weights(RATIOS, 0.01, 50.0)
    peak = np.full(runs, -np.inf)
    log_lr = np.zeros((runs, len(RATIOS)))
    for share, events in steps:
        x = rng.random((runs, events)) < share
        for lo in range(0, events, 100):
            k = np.cumsum(x[:, lo : lo + 100], axis=1)
            n = np.broadcast_to(np.arange(1, k.shape[1] + 1), k.shape)
            path = log_lr[:, None, :] + ratio_log_lr(RATIOS, share * misread, k, n)
            peak = np.maximum(peak, log_e_above(RATIOS, log_prior, path).max(axis=1))
            log_lr = path[:, -1, :]
    return float(np.mean(peak >= math.log(20)))


def test_valid_under_the_null_when_the_share_changes() -> None:
    # 400 A/A rollouts through shares 1, 5, 20 and 50 %, looked at after every event.
    assert _aa_rejection_rate() <= 0.05 + 0.02


def test_the_simulation_can_see_an_invalid_test() -> None:
    # The same runs judged with shares 20 % too small: the test must break visibly.
    assert _aa_rejection_rate(misread=0.8) > 0.2


def _run(
    spec: AnalysisSpec,
    stable_rate: float,
    candidate_rate: float,
    batches: int,
    seed: int,
    per_batch: int = 1000,
    share: float = 0.05,
) -> tuple[SequentialState, analysis.Verdict, int]:
    rng = np.random.default_rng(seed)
    state = SequentialState.start(spec, None, share)
    verdict = analysis.Verdict("inconclusive", ())
    for i in range(batches):
        nc = int(rng.binomial(per_batch, share))
        ns = per_batch - nc
        stable = measurements(1, ns, int(rng.binomial(ns, stable_rate)))
        candidate = measurements(2, nc, int(rng.binomial(nc, candidate_rate)))
        state, verdict = assess(spec, state, stable, candidate, elapsed_s=30.0 * (i + 1))
        if verdict.outcome == "fail":
            return state, verdict, (i + 1) * per_batch
    return state, verdict, batches * per_batch


def test_detects_three_times_the_error_rate() -> None:
    spec = AnalysisSpec(
        latency_tolerance=None, accuracy_tolerance=None, budget_s=1e9, deadline_s=1e9
    )
    seen = [_run(spec, 0.01, 0.03, 60, seed)[2] for seed in range(10)]
    assert max(seen) < 60_000
    assert float(np.median(seen)) <= 15_000


def test_a_failure_says_why_with_the_numbers() -> None:
    spec = AnalysisSpec(
        latency_tolerance=None, accuracy_tolerance=None, budget_s=1e9, deadline_s=1e9
    )
    state, verdict, _ = _run(spec, 0.01, 0.05, 100, seed=3)
    assert verdict.outcome == "fail"
    (check,) = verdict.checks
    track = state.counts["errors"]
    assert check.name == "errors"
    assert check.outcome == "fail"
    assert check.e_value is not None
    assert check.e_bound is not None
    assert check.e_bound == pytest.approx(1 / 0.05)
    assert check.e_value >= check.e_bound
    assert (check.candidate_events, check.candidate_units) == (
        track.candidate_events,
        track.candidate_units,
    )
    reason = verdict.reasons[0]
    assert f"{track.candidate_events:,}/{track.candidate_units:,}" in reason
    assert f"{track.stable_events:,}/{track.stable_units:,}" in reason
    assert "e-value" in reason
    assert "m/alpha = 20" in reason
    assert check.estimate is not None
    assert f"ratio {check.estimate:.3g}" in reason
    assert check.lower is not None
    assert check.lower > 1  # the lower bound of the ratio is above 1 when it failed


def test_no_data_is_inconclusive_then_fails_past_the_deadline() -> None:
    spec = AnalysisSpec(budget_s=60, budget_requests=100, deadline_s=300)
    state = SequentialState.start(spec, None, 0.05)
    empty = measurements(2, 0)
    state, verdict = assess(spec, state, measurements(1, 5000, 50), empty, elapsed_s=120)
    assert verdict.outcome == "inconclusive"
    assert any("no traffic" in reason for reason in verdict.reasons)
    state, verdict = assess(spec, state, measurements(1, 5000, 50), None, elapsed_s=200)
    assert verdict.outcome == "inconclusive"
    assert any("candidate measurements missing" in reason for reason in verdict.reasons)
    state, verdict = assess(spec, state, measurements(1, 5000, 50), empty, elapsed_s=301)
    assert verdict.outcome == "fail"
    assert "deadline" in verdict.reasons[0]


def test_missing_labels_block_a_budget_pass() -> None:
    spec = AnalysisSpec(
        latency_tolerance=None,
        accuracy_tolerance=1.25,
        budget_s=60,
        budget_requests=100,
        deadline_s=600,
        min_samples=50,
    )
    state = SequentialState.start(spec, None, 0.05)
    for t in (30, 90):
        state, verdict = assess(
            spec, state, measurements(1, 9500, 95), measurements(2, 500, 5), elapsed_s=t
        )
    assert verdict.outcome == "inconclusive"
    assert any("accuracy: too little data" in reason for reason in verdict.reasons)
    _, verdict = assess(spec, state, measurements(1, 0), measurements(2, 0), elapsed_s=601)
    assert verdict.outcome == "fail"


def test_budget_pass_and_confident_pass() -> None:
    spec = AnalysisSpec(
        latency_tolerance=None,
        accuracy_tolerance=None,
        budget_s=60,
        budget_requests=400,
        deadline_s=600,
    )
    state = SequentialState.start(spec, None, 0.05)
    state, verdict = assess(
        spec, state, measurements(1, 9500, 95), measurements(2, 500, 5), elapsed_s=30
    )
    assert verdict.outcome == "inconclusive"
    state, verdict = assess(
        spec, state, measurements(1, 9500, 95), measurements(2, 500, 5), elapsed_s=61
    )
    assert verdict.outcome == "pass"
    assert "budget" in verdict.reasons[0]
    # A new step starts its own budget; the evidence carries over.
    state = state.begin_step()
    assert state.step_requests == 0
    assert state.counts["errors"].candidate_units == 1000
    # Enough equal data puts the ratio's upper bound under the tolerance: pass on confidence.
    spec = AnalysisSpec(
        latency_tolerance=None, accuracy_tolerance=None, budget_s=1e9, deadline_s=1e9
    )
    state = SequentialState.start(spec, None, 0.5)
    state, verdict = assess(
        spec, state, measurements(1, 200_000, 4000), measurements(2, 200_000, 4000), elapsed_s=1
    )
    assert verdict.outcome == "pass"
    (check,) = verdict.checks
    assert check.upper is not None
    assert check.upper <= 1.25
    assert check.lower is not None
    assert check.lower < 1.0 < check.upper


def test_state_round_trips_through_json() -> None:
    spec = AnalysisSpec(
        accuracy_tolerance=1.25, max_error_rate=0.05, max_p99_ms=200.0, drift_margin=0.2
    )
    baseline = measurements(1, 10_000, latency={latency_bin(20.0): 9_900, latency_bin(80.0): 100})
    state = SequentialState.start(spec, baseline, 0.05)
    state, verdict = assess(
        spec,
        state,
        measurements(
            1,
            9_500,
            90,
            latency={latency_bin(20.0): 9_400, latency_bin(90.0): 100},
            predictions={"0": 8_500, "1": 1_000},
            labelled=2_000,
            correct=1_800,
        ),
        measurements(
            2,
            500,
            9,
            latency={latency_bin(20.0): 490, latency_bin(90.0): 10},
            predictions={"0": 400, "1": 100},
            labelled=100,
            correct=88,
        ),
        elapsed_s=30,
    )
    data = json.loads(json.dumps(state.to_dict()))
    again = SequentialState.from_dict(data)
    assert again == state
    assert again.to_dict() == state.to_dict()
    assert [c.name for c in verdict.checks] == [
        "errors",
        "latency>p99",
        "accuracy",
        "error_rate",
        "p99",
        "drift",
    ]
    assert json.loads(json.dumps(verdict.to_dict(), allow_nan=False))["outcome"] == "inconclusive"
    with pytest.raises(InvalidInput):
        SequentialState.from_dict({**data, "format": 99})


def test_latency_exceedances_of_the_stable_p99() -> None:
    spec = AnalysisSpec(error_tolerance=None, accuracy_tolerance=None, budget_s=1e9, deadline_s=1e9)
    fast, slow = latency_bin(20.0), latency_bin(100.0)
    baseline = measurements(1, 10_000, latency={fast: 9_900, slow: 100})
    state = SequentialState.start(spec, baseline, 0.05)
    assert state.latency_ms["p99"] == pytest.approx(22.0, rel=0.1)
    verdict = analysis.Verdict("inconclusive", ())
    for _ in range(20):
        # stable: 1 % above its p99; candidate: 5 %
        stable = measurements(1, 9_500, latency={fast: 9_405, slow: 95})
        candidate = measurements(2, 500, latency={fast: 475, slow: 25})
        state, verdict = assess(spec, state, stable, candidate, elapsed_s=1)
        if verdict.outcome == "fail":
            break
    assert verdict.outcome == "fail"
    assert verdict.checks[0].name == "latency>p99"


def test_latency_threshold_learned_from_stable_before_it_is_used() -> None:
    spec = AnalysisSpec(error_tolerance=None, accuracy_tolerance=None)
    state = SequentialState.start(spec, None, 0.05)
    assert state.latency_ms == {}
    stable = measurements(1, 9_500, latency={latency_bin(20.0): 9_405, latency_bin(99.0): 95})
    candidate = measurements(2, 500, latency={latency_bin(20.0): 400, latency_bin(99.0): 100})
    state, verdict = assess(spec, state, stable, candidate, elapsed_s=1)
    assert "p99" in state.latency_ms
    assert state.counts["latency>p99"].candidate_units == 0  # not judged with its own data
    assert verdict.outcome == "inconclusive"
    state, _ = assess(spec, state, stable, candidate, elapsed_s=2)
    assert state.counts["latency>p99"].candidate_events == 100


def test_absolute_error_rate_bound() -> None:
    spec = AnalysisSpec(
        error_tolerance=None,
        latency_tolerance=None,
        accuracy_tolerance=None,
        max_error_rate=0.01,
        budget_s=1e9,
        deadline_s=1e9,
    )
    state = SequentialState.start(spec, None, 0.05)
    state, verdict = assess(
        spec, state, measurements(1, 9_500), measurements(2, 2_000, 60), elapsed_s=1
    )
    assert verdict.outcome == "fail"
    assert "3.00%" in verdict.reasons[0]
    state = SequentialState.start(spec, None, 0.05)
    state, verdict = assess(
        spec, state, measurements(1, 9_500), measurements(2, 5_000, 10), elapsed_s=1
    )
    assert verdict.outcome == "pass"


def test_shadow_agreement_bound() -> None:
    spec = AnalysisSpec(
        error_tolerance=None,
        latency_tolerance=None,
        min_agreement=0.95,
        budget_s=1e9,
        deadline_s=1e9,
    )
    stable = measurements(1, 2_000)
    unlike = Measurements("d", 2, "shadow", requests=500, compared=500, agreed=400)
    _, verdict = assess(spec, SequentialState.start(spec, None, 0.5), stable, unlike, elapsed_s=1)
    assert verdict.outcome == "fail"
    assert "disagreement: candidate above 5.00%" in verdict.reasons[0]
    assert "mirrored answers unlike the live ones 20.00% (100/500)" in verdict.reasons[0]
    alike = Measurements("d", 2, "shadow", requests=2_000, compared=2_000, agreed=1_998)
    _, verdict = assess(spec, SequentialState.start(spec, None, 0.5), stable, alike, elapsed_s=1)
    assert verdict.outcome == "pass"
    with pytest.raises(InvalidInput, match="min_agreement"):
        AnalysisSpec(min_agreement=1.5)


def test_binomial_confidence_covers() -> None:
    rng = np.random.default_rng(3)
    misses = 0
    for _ in range(200):
        k = int(rng.binomial(500, 0.1))
        lo, hi = binomial_confidence(k, 500, 0.05)
        misses += not lo <= 0.1 <= hi
    assert misses <= 10
    assert binomial_confidence(0, 0, 0.05) == (0.0, 1.0)
    lo, hi = binomial_confidence(0, 1000, 0.05)
    assert lo == 0.0
    assert 0 < hi < 0.01


def test_drift_is_a_magnitude_with_bounds() -> None:
    stable = {"0": 90_000, "1": 10_000}
    same = {"0": 4_500, "1": 500}
    lo, est, hi = js_distance_bounds(stable, same, 0.05)
    assert lo == 0.0
    assert est < 0.01
    assert 0 < hi < 0.2
    shifted = {"0": 2_500, "1": 2_500}  # positive rate 10 % -> 50 %
    lo, est, hi = js_distance_bounds(stable, shifted, 0.05)
    assert 0.2 < lo < est < hi
    spec = AnalysisSpec(
        error_tolerance=None, latency_tolerance=None, accuracy_tolerance=None, drift_margin=0.2
    )
    state = SequentialState.start(spec, None, 0.05)
    _, verdict = assess(
        spec,
        state,
        measurements(1, 100_000, predictions=stable),
        measurements(2, 5_000, predictions=shifted),
        elapsed_s=1,
    )
    assert verdict.outcome == "fail"
    assert "Jensen-Shannon distance" in verdict.reasons[0]


def test_upper_bound_of_the_ratio() -> None:
    log_prior = prior_log_weights(RATIOS, 0.5, 50.0)
    log_lr = ratio_log_lr(RATIOS, 0.5, 5000, 10_000)  # equal rates, lots of data
    below = log_e_below(log_prior, log_lr)
    assert below[0] == -math.inf
    upper = analysis._upper_bound(RATIOS, below, math.log(20))
    assert 1.0 < upper < 1.15


def test_spec_is_checked() -> None:
    with pytest.raises(InvalidInput):
        AnalysisSpec(alpha=0.0)
    with pytest.raises(InvalidInput):
        AnalysisSpec(error_tolerance=0.9)
    with pytest.raises(InvalidInput):
        AnalysisSpec(budget_s=600, deadline_s=60)
    with pytest.raises(InvalidInput):
        SequentialState.start(AnalysisSpec(), None, 0.0)
    assert AnalysisSpec().checks == 2  # errors and latency; accuracy needs labels, so opt-in
    assert AnalysisSpec(accuracy_tolerance=1.2).checks == 3
    assert AnalysisSpec(max_error_rate=0.01, max_p99_ms=300, drift_margin=0.1).checks == 5
