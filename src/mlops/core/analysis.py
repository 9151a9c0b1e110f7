# ruff: noqa: RUF002  (docstrings use the usual notation of the statistics: Greek letters)
"""Analysis: anytime-valid comparison of a candidate with the stable release, and the verdict.

The candidate and the stable release serve the same traffic at the same time. Every check is
an e-process (a running e-value), so the controller may look after every request without
raising the false-rollback rate above `alpha` (Ville's inequality: a nonnegative
supermartingale that starts at 1 ever reaches 1/α with probability at most α).

Relative counts (errors, latency above the stable release's p99, wrong predictions). Within
one assessment interval, a unit (a request, or a labelled prediction) goes to the candidate
with share θ0 = candidate units / all units. If the candidate's event rate is r times the
stable one's, an event comes from the candidate with probability θ(r) = θ0·r / (θ0·r + 1 - θ0).
For k candidate events among n, the likelihood ratio of r against r = 1 is

    LR_r = θ(r)^k (1 - θ(r))^(n-k) / (θ0^k (1 - θ0)^(n-k)) = r^k / (1 + θ0·(r - 1))^n.

The state keeps log Π LR_r over all intervals for every r on a fixed grid of ratios, each
interval with its own θ0. The rollback e-value is a mixture over the grid ratios r > 1 with
fixed weights w_r: E = Σ w_r Π LR_r / Σ w_r. Fail when its running maximum reaches m/α.

Why this stays valid when the weights change (canary steps). Fix r > 1 and an interval. Under
the null (a candidate's unit is no more likely to have an event than a stable one), given the
past and the interval's unit counts, routing that ignores outcomes makes the candidate's units
a random subset of the interval's, so k is (at most, stochastically) hypergeometric; with θ0
the routing probability instead of the realised share (the benchmark's per-request view), k is
at most binomial(n, θ0). Since r^k is increasing and convex in k and the hypergeometric is
below binomial(n, θ0) in the convex order (Hoeffding 1963), E[r^k] ≤ (1 + θ0·(r - 1))^n
either way: each interval multiplies Π LR_r by a factor of conditional mean at most 1,
whatever its θ0. So Π LR_r is a nonnegative supermartingale for every r; a mixture with
weights fixed in advance is one too, and its running maximum obeys Ville's inequality. A beta
mixture over θ at one fixed θ0 (the closed form `beta_binomial_log_e`) has no such product
form across changing θ0, which is why the mixture is over ratios r, not over θ.

The weights w_r are the image on the ratio grid of the prior Beta(c·θs, c·(1 - θs)) on θ at
the share θs the candidate starts with (c = `AnalysisSpec.prior_c`, default 50). At a
constant share θs, E therefore equals the one-sided beta-binomial e-value
B(a+k, b+n-k)/B(a, b) / (θs^k (1-θs)^(n-k)) with the prior restricted to θ > θs, up to the
grid's discretisation. c = 50 at a 5 % share is about 2.5 prior candidate events. It was
chosen by simulation (bench/analysis_validity.py, 5 % share, 1 % errors, m = 3): the median
delay to detect +50 % errors was 81,600, 80,100 and 79,400 requests for c = 20, 50 and 100,
and for 3x errors 7,700, 8,600 and 10,100: a larger c favours small regressions, a smaller
one large regressions.

Promotion uses the same state: for a ratio ρ on the grid, the mixture over r < ρ of
Π LR_r / Π LR_ρ is an e-process for "the ratio is at least ρ", so the grid ratios it rejects
at m/α_promote bound the ratio from above, anytime (a confidence sequence).

Absolute checks (error rate under a bound, p99 under a bound) are one-sample beta-binomial
e-processes on the candidate's own counts. Prediction drift is a magnitude: anytime-valid
confidence intervals for each class share of both versions give bounds on the Jensen-Shannon
distance between the two prediction distributions, compared with a margin.

The α of each purpose is split evenly (Bonferroni) over the m checks that can decide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from mlops.core.measure import Measurements, count_above, quantile_ms
from mlops.errors import InvalidInput

__all__ = [
    "AnalysisSpec",
    "CheckResult",
    "CountTrack",
    "Outcome",
    "RateTrack",
    "SequentialState",
    "Verdict",
    "assess",
    "assess_drift",
    "assess_rate",
    "assess_ratio",
    "assess_verdict",
    "beta_binomial_log_e",
    "binomial_confidence",
    "js_distance_bounds",
    "log_e_above",
    "log_e_below",
    "prior_log_weights",
    "ratio_grid",
    "ratio_log_lr",
]

Outcome = Literal["pass", "fail", "inconclusive"]
FloatArray = NDArray[np.float64]

GRID_STEP = 0.05
"""Spacing of the ratio grid in log units (5 %)."""
GRID_SPAN = 3.5
"""The grid covers ratios from e^-3.5 ≈ 0.03 to e^3.5 ≈ 33."""
DRIFT_CLASSES = 20
"""Prediction classes kept apart for drift; rarer ones are merged into one."""
STATE_FORMAT = 1


# -- the e-process primitives (vectorised; the benchmark uses them directly) -------------------


def ratio_grid(extra: Iterable[float] = ()) -> tuple[float, ...]:
    """The grid of rate ratios (candidate / stable): 1 and its 5 % steps, plus `extra` ratios."""
    steps = round(GRID_SPAN / GRID_STEP)
    base = [math.exp(i * GRID_STEP) for i in range(-steps, steps + 1)]
    values = sorted({*base, *(float(x) for x in extra if x > 0 and math.isfinite(x))})
    out: list[float] = []
    for value in values:
        if out and value <= out[-1] * (1 + 1e-9):
            continue
        out.append(value)
    return tuple(out)


def _theta(ratio: FloatArray, share: float) -> FloatArray:
    return np.asarray(share * ratio / (share * ratio + 1.0 - share), dtype=np.float64)


def prior_log_weights(ratios: Sequence[float], share: float, c: float) -> FloatArray:
    """Log weights of the grid ratios: the Beta(c·share, c·(1-share)) prior on θ, cell by cell.

    Each grid ratio gets the prior mass of θ between the images of the geometric midpoints
    around it; the weights sum to 1 over the whole grid.
    """
    if not 0 < share < 1:
        raise InvalidInput(f"the candidate's share must be in (0, 1), not {share}")
    r = np.asarray(ratios, dtype=np.float64)
    mids = np.sqrt(r[1:] * r[:-1])
    cdf = special.betainc(c * share, c * (1 - share), _theta(mids, share))
    edges = np.concatenate([[0.0], cdf, [1.0]])
    mass = np.maximum(np.diff(edges), 1e-300)
    return np.asarray(np.log(mass / mass.sum()), dtype=np.float64)


def ratio_log_lr(
    ratios: Sequence[float] | FloatArray, share: ArrayLike, k: ArrayLike, n: ArrayLike
) -> FloatArray:
    """log LR_r = k·ln r - n·ln(1 + θ0·(r - 1)) for every grid ratio (the last axis).

    `share` (θ0), `k` (candidate events) and `n` (all events) broadcast against each other.
    """
    r = np.asarray(ratios, dtype=np.float64)
    s = np.asarray(share, dtype=np.float64)[..., None]
    kk = np.asarray(k, dtype=np.float64)[..., None]
    nn = np.asarray(n, dtype=np.float64)[..., None]
    return np.asarray(kk * np.log(r) - nn * np.log1p(s * (r - 1.0)), dtype=np.float64)


def _logsumexp(x: FloatArray, axis: int = -1) -> FloatArray:
    return np.asarray(special.logsumexp(x, axis=axis), dtype=np.float64)


def log_e_above(
    ratios: Sequence[float], log_prior: FloatArray, log_lr: FloatArray, null: float = 1.0
) -> FloatArray:
    """log e-value against "ratio ≤ null": the prior restricted to grid ratios above `null`.

    `null` must be a grid ratio; `log_lr` may carry leading axes (e.g. one row per event).
    """
    r = np.asarray(ratios, dtype=np.float64)
    i = _grid_index(r, null)
    lp = np.asarray(log_prior, dtype=np.float64)
    alt = slice(i + 1, None)
    mixed = _logsumexp(lp[alt] + log_lr[..., alt]) - _logsumexp(lp[alt])
    return np.asarray(mixed - log_lr[..., i], dtype=np.float64)


def log_e_below(log_prior: FloatArray, log_lr: FloatArray) -> FloatArray:
    """For every grid ratio ρ: log e-value against "ratio ≥ ρ" (prior restricted below ρ).

    The first grid ratio has no alternative below it and gets -inf.
    """
    lp = np.asarray(log_prior, dtype=np.float64)
    num = np.logaddexp.accumulate(lp + log_lr, axis=-1)
    den = np.logaddexp.accumulate(lp)
    out = np.full(np.shape(log_lr), -np.inf)
    out[..., 1:] = num[..., :-1] - den[:-1] - log_lr[..., 1:]
    return out


def _grid_index(ratios: FloatArray, value: float) -> int:
    """Index of the largest grid ratio ≤ `value` (so a test at it is conservative)."""
    i = int(np.searchsorted(ratios, value * (1 + 1e-9), side="right")) - 1
    return max(i, 0)


def _upper_bound(ratios: Sequence[float], log_e_rows: FloatArray, log_bound: float) -> float:
    """The smallest grid ratio from which every larger one is rejected; inf when none is."""
    kept = np.nonzero(log_e_rows < log_bound)[0]
    last = int(kept[-1]) if kept.size else -1
    return float(ratios[last + 1]) if last + 1 < len(ratios) else math.inf


def _lower_bound(
    ratios: Sequence[float], log_prior: FloatArray, log_lr: FloatArray, log_bound: float
) -> float:
    """The largest grid ratio up to which every ratio is rejected from above; 0 when none is."""
    lp = np.asarray(log_prior, dtype=np.float64)
    rev_num = np.logaddexp.accumulate((lp + log_lr)[::-1])[::-1]
    rev_den = np.logaddexp.accumulate(lp[::-1])[::-1]
    rows = np.full(len(ratios), -np.inf)
    rows[:-1] = rev_num[1:] - rev_den[1:] - log_lr[:-1]
    kept = np.nonzero(rows < log_bound)[0]
    first = int(kept[0]) if kept.size else len(ratios)
    return float(ratios[first - 1]) if first > 0 else 0.0


def beta_binomial_log_e(
    k: int,
    n: int,
    p0: float,
    a: float,
    b: float,
    side: Literal["two", "above", "below"] = "above",
) -> float:
    """log of B(a+k, b+n-k)/B(a, b) / (p0^k (1-p0)^(n-k)), the Beta(a, b) mixture e-value.

    `side="above"` restricts the prior to p > p0 (evidence that the rate exceeds p0),
    `"below"` to p < p0; `"two"` is the plain mixture.
    """
    if not 0 < p0 < 1:
        raise InvalidInput(f"the null rate must be in (0, 1), not {p0}")
    log_e = float(
        special.betaln(a + k, b + n - k)
        - special.betaln(a, b)
        - k * math.log(p0)
        - (n - k) * math.log1p(-p0)
    )
    if side == "two":
        return log_e
    tail = special.betaincc if side == "above" else special.betainc
    post = float(tail(a + k, b + n - k, p0))
    prior = float(tail(a, b, p0))
    return log_e + math.log(max(post, 1e-300)) - math.log(prior)


def binomial_confidence(k: int, n: int, delta: float) -> tuple[float, float]:
    """An anytime-valid 1-δ confidence interval for a proportion, k successes in n trials.

    The set of p whose Beta(1/2, 1/2) mixture e-value (`beta_binomial_log_e`, two-sided) is
    under 1/δ: it covers the true p at every n at once with probability at least 1-δ.
    """
    if n <= 0:
        return (0.0, 1.0)
    target = math.log(1 / delta)
    a = b = 0.5

    def excess(p: float) -> float:
        return beta_binomial_log_e(k, n, p, a, b, "two") - target

    tiny = 1e-15
    p_hat = min(max(k / n, tiny), 1 - tiny)
    lower = 0.0 if k == 0 or excess(tiny) < 0 else optimize.brentq(excess, tiny, p_hat)
    upper = 1.0 if k == n or excess(1 - tiny) < 0 else optimize.brentq(excess, p_hat, 1 - tiny)
    return (float(lower), float(upper))


def _js_terms(p: FloatArray, q: FloatArray) -> FloatArray:
    """Per-class terms of the Jensen-Shannon divergence in bits (zero where p + q = 0)."""
    m = (p + q) / 2
    safe = np.where(m > 0, m, 1.0)
    terms = special.xlogy(p, p / safe) + special.xlogy(q, q / safe)
    return np.asarray(terms / (2 * math.log(2)), dtype=np.float64)


def js_distance_bounds(
    stable: Mapping[str, int], candidate: Mapping[str, int], delta: float
) -> tuple[float, float, float]:
    """(lower, estimate, upper) of the Jensen-Shannon distance (base 2, in [0, 1]).

    Each class share of each version gets an anytime-valid interval at δ / (2 × classes);
    the divergence is a sum of per-class terms, each convex in (p, q), so its smallest value
    over the box of intervals is bounded below class by class (nearest corners) and its
    largest above (the worst corner). Classes beyond the 19 most frequent (pooled) are
    merged, which can only lower the divergence.
    """
    pooled: dict[str, int] = {}
    for counts in (stable, candidate):
        for key, n in counts.items():
            pooled[key] = pooled.get(key, 0) + n
    order = sorted(pooled, key=lambda key: (-pooled[key], key))
    kept = order[: DRIFT_CLASSES - 1] if len(order) > DRIFT_CLASSES else order
    rest = [key for key in order if key not in set(kept)]

    def vector(counts: Mapping[str, int]) -> list[int]:
        out = [counts.get(key, 0) for key in kept]
        if rest:
            out.append(sum(counts.get(key, 0) for key in rest))
        return out

    s_counts, c_counts = vector(stable), vector(candidate)
    ns, nc = sum(s_counts), sum(c_counts)
    if ns == 0 or nc == 0:
        return (0.0, math.nan, 1.0)
    per = delta / (2 * len(s_counts))
    s_box = np.array([binomial_confidence(k, ns, per) for k in s_counts])
    c_box = np.array([binomial_confidence(k, nc, per) for k in c_counts])
    p = np.asarray(s_counts, dtype=np.float64) / ns
    q = np.asarray(c_counts, dtype=np.float64) / nc
    estimate = float(_js_terms(p, q).sum())
    s_lo, s_hi, c_lo, c_hi = s_box[:, 0], s_box[:, 1], c_box[:, 0], c_box[:, 1]
    low = np.where(
        s_lo > c_hi,
        _js_terms(s_lo, c_hi),
        np.where(c_lo > s_hi, _js_terms(s_hi, c_lo), 0.0),
    )
    corners = [_js_terms(x, y) for x in (s_lo, s_hi) for y in (c_lo, c_hi)]
    high = np.max(np.stack(corners), axis=0)
    return (
        math.sqrt(min(float(low.sum()), 1.0)),
        math.sqrt(min(max(estimate, 0.0), 1.0)),
        math.sqrt(min(float(high.sum()), 1.0)),
    )


# -- what to check ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisSpec:
    """What the analysis checks, at what risk, and for how long a step may run."""

    alpha: float = 0.05
    """Risk of rolling back a candidate that is no worse, split over the checks that can fail."""
    alpha_promote: float = 0.05
    """Risk of promoting on confidence a candidate beyond a tolerance, split likewise."""
    error_tolerance: float | None = 1.25
    """Largest acceptable candidate/stable error-rate ratio; None turns the check off."""
    latency_tolerance: float | None = 1.25
    """Largest acceptable ratio of rates above the stable release's latency quantiles."""
    accuracy_tolerance: float | None = None
    """Largest acceptable ratio of wrong-prediction rates (delayed labels). Off by default:
    turn it on for deployments that get labels, since a check without data blocks a pass."""
    latency_quantiles: tuple[float, ...] = (0.99,)
    """Stable latency quantiles whose exceedances are counted; one check each."""
    error_kinds: tuple[str, ...] = ("exception", "timeout", "invalid_output")
    max_error_rate: float | None = None
    """Absolute bound on the candidate's error rate."""
    max_p99_ms: float | None = None
    """Absolute bound on the candidate's p99 latency: at most 1 % of requests above it."""
    drift_margin: float | None = None
    """Largest acceptable Jensen-Shannon distance between the prediction distributions."""
    min_agreement: float | None = None
    """Smallest acceptable share of mirrored requests that the candidate answers as the live
    release did (shadow traffic; needs prediction logging)."""
    budget_s: float = 600.0
    """A step passes when it has run this long and seen `budget_requests` with no failure."""
    budget_requests: int = 2_000
    """Candidate requests a step needs before it can pass on its budget."""
    deadline_s: float = 3_600.0
    """A step still inconclusive this long after it began fails."""
    min_samples: int = 100
    """Candidate (and, for ratios, stable) units each check needs before a budget pass."""
    prior_c: float = 50.0
    """Strength c of the Beta(c·θ0, c·(1-θ0)) mixing prior."""

    def __post_init__(self) -> None:
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            for number in value if isinstance(value, tuple) else (value,):
                if isinstance(number, float) and not math.isfinite(number):
                    raise InvalidInput(f"{spec_field.name} must be a finite number, not {number}")
        for name in ("alpha", "alpha_promote"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise InvalidInput(f"{name} must be in (0, 1), not {value}")
        for name in ("error_tolerance", "latency_tolerance", "accuracy_tolerance"):
            value = getattr(self, name)
            if value is not None and not value > 1:
                raise InvalidInput(f"{name} must be a ratio above 1, not {value}")
        if any(not 0 < q < 1 for q in self.latency_quantiles):
            raise InvalidInput(f"latency quantiles must be in (0, 1): {self.latency_quantiles}")
        if self.max_error_rate is not None and not 0 < self.max_error_rate < 1:
            raise InvalidInput(f"max_error_rate must be in (0, 1), not {self.max_error_rate}")
        if self.max_p99_ms is not None and not self.max_p99_ms > 0:
            raise InvalidInput(f"max_p99_ms must be positive, not {self.max_p99_ms}")
        if self.min_agreement is not None and not 0 < self.min_agreement < 1:
            raise InvalidInput(f"min_agreement must be in (0, 1), not {self.min_agreement}")
        if self.drift_margin is not None and not 0 < self.drift_margin < 1:
            raise InvalidInput(f"drift_margin must be in (0, 1), not {self.drift_margin}")
        if self.budget_requests < 1 or self.budget_s < 0:
            raise InvalidInput("a step's budget needs at least one request and no negative time")
        if self.deadline_s < self.budget_s:
            raise InvalidInput("the deadline cannot come before the end of the budget")
        if self.prior_c <= 0:
            raise InvalidInput(f"prior_c must be positive, not {self.prior_c}")

    @property
    def ratio_checks(self) -> dict[str, float]:
        """The relative checks: name -> tolerance."""
        out: dict[str, float] = {}
        if self.error_tolerance is not None:
            out["errors"] = self.error_tolerance
        if self.latency_tolerance is not None:
            for q in self.latency_quantiles:
                out[f"latency>{_quantile_name(q)}"] = self.latency_tolerance
        if self.accuracy_tolerance is not None:
            out["accuracy"] = self.accuracy_tolerance
        return out

    @property
    def rate_checks(self) -> dict[str, float]:
        """The absolute checks: name -> the largest acceptable rate."""
        out: dict[str, float] = {}
        if self.max_error_rate is not None:
            out["error_rate"] = self.max_error_rate
        if self.max_p99_ms is not None:
            out["p99"] = 0.01
        if self.min_agreement is not None:
            out["disagreement"] = 1 - self.min_agreement
        return out

    @property
    def checks(self) -> int:
        """m: the number of checks that can fail, over which α is split."""
        return len(self.ratio_checks) + len(self.rate_checks) + (self.drift_margin is not None)


def _quantile_name(q: float) -> str:
    return f"p{q * 100:g}"


# -- the running state ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CountTrack:
    """The running evidence of one relative check."""

    log_lr: tuple[float, ...]
    """log Π LR_r for every grid ratio r (0 at r = 1)."""
    peak_log_e: float = 0.0
    """Running maximum of the rollback log e-value."""
    candidate_events: int = 0
    candidate_units: int = 0
    stable_events: int = 0
    stable_units: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_lr": list(self.log_lr),
            "peak_log_e": self.peak_log_e,
            "candidate": [self.candidate_events, self.candidate_units],
            "stable": [self.stable_events, self.stable_units],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CountTrack:
        ce, cu = data["candidate"]
        se, su = data["stable"]
        return cls(
            tuple(float(x) for x in data["log_lr"]),
            float(data["peak_log_e"]),
            int(ce),
            int(cu),
            int(se),
            int(su),
        )


@dataclass(frozen=True)
class RateTrack:
    """The candidate's own counts for one absolute check."""

    events: int = 0
    units: int = 0
    peak_log_e: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "units": self.units, "peak_log_e": self.peak_log_e}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RateTrack:
        return cls(int(data["events"]), int(data["units"]), float(data["peak_log_e"]))


@dataclass(frozen=True)
class SequentialState:
    """Everything the analysis remembers between assessments; JSON-able by `to_dict`."""

    ratios: tuple[float, ...]
    log_prior: tuple[float, ...]
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    """Stable latency thresholds (e.g. "p99" -> 48.2), learned before they are used."""
    counts: Mapping[str, CountTrack] = field(default_factory=dict)
    rates: Mapping[str, RateTrack] = field(default_factory=dict)
    stable_predictions: Mapping[str, int] = field(default_factory=dict)
    candidate_predictions: Mapping[str, int] = field(default_factory=dict)
    candidate_requests: int = 0
    step_requests: int = 0
    """Candidate requests since the current step began (`begin_step`)."""
    drift_peak: float = 0.0
    """Largest lower bound of the drift distance seen so far."""

    @classmethod
    def start(
        cls, spec: AnalysisSpec, baseline: Measurements | None, share: float
    ) -> SequentialState:
        """The state before the candidate's first request.

        `baseline`: the stable release's measurements before the candidate got traffic (its
        latency quantiles become the thresholds); `share`: the candidate's first traffic share
        (0-1), which shapes the mixing prior. The prior is fixed here, once, for the rollout.
        """
        if not 0 < share <= 1:
            raise InvalidInput(f"the candidate's share must be in (0, 1], not {share}")
        ratios = ratio_grid(spec.ratio_checks.values())
        # At share 1 (blue-green) the relative checks get no data; any fixed prior will do.
        log_prior = prior_log_weights(ratios, min(share, 0.99), spec.prior_c)
        thresholds: dict[str, float] = {}
        if baseline is not None:
            thresholds = _learn_thresholds(spec, baseline.latency, thresholds)
        zero = tuple(0.0 for _ in ratios)
        return cls(
            ratios,
            tuple(float(x) for x in log_prior),
            thresholds,
            {name: CountTrack(zero) for name in spec.ratio_checks},
            {name: RateTrack() for name in spec.rate_checks},
        )

    def begin_step(self) -> SequentialState:
        """The same evidence, with the step's request count back at zero (a new canary step)."""
        return replace(self, step_requests=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "ratios": list(self.ratios),
            "log_prior": list(self.log_prior),
            "latency_ms": dict(self.latency_ms),
            "counts": {name: track.to_dict() for name, track in self.counts.items()},
            "rates": {name: track.to_dict() for name, track in self.rates.items()},
            "stable_predictions": dict(self.stable_predictions),
            "candidate_predictions": dict(self.candidate_predictions),
            "candidate_requests": self.candidate_requests,
            "step_requests": self.step_requests,
            "drift_peak": self.drift_peak,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SequentialState:
        if data.get("format") != STATE_FORMAT:
            raise InvalidInput(f"unknown analysis state format {data.get('format')!r}")
        return cls(
            tuple(float(x) for x in data["ratios"]),
            tuple(float(x) for x in data["log_prior"]),
            {str(k): float(v) for k, v in data["latency_ms"].items()},
            {str(k): CountTrack.from_dict(v) for k, v in data["counts"].items()},
            {str(k): RateTrack.from_dict(v) for k, v in data["rates"].items()},
            {str(k): int(v) for k, v in data["stable_predictions"].items()},
            {str(k): int(v) for k, v in data["candidate_predictions"].items()},
            int(data["candidate_requests"]),
            int(data["step_requests"]),
            float(data["drift_peak"]),
        )


def _learn_thresholds(
    spec: AnalysisSpec, bins: Mapping[int, int], known: Mapping[str, float]
) -> dict[str, float]:
    """Thresholds for quantiles not yet known, from a stable histogram with enough requests."""
    out = dict(known)
    total = sum(bins.values())
    for q in spec.latency_quantiles:
        name = _quantile_name(q)
        if name in out or total < 10 / (1 - q):
            continue
        value = quantile_ms(bins, q)
        if value is not None:
            out[name] = value
    return out


# -- the verdict ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome, a sentence with the numbers behind it, and those numbers."""

    name: str
    outcome: Outcome
    reason: str
    estimate: float | None = None
    """Ratio (relative), rate (absolute) or Jensen-Shannon distance (drift)."""
    lower: float | None = None
    upper: float | None = None
    """Anytime-valid bounds of the estimate (lower at alpha/m, upper at alpha_promote/m)."""
    limit: float | None = None
    """Tolerance, largest rate or margin."""
    e_value: float | None = None
    """Evidence that the candidate is worse (running maximum)."""
    e_bound: float | None = None
    """m/alpha: the e-value at which the check fails."""
    candidate_events: int = 0
    candidate_units: int = 0
    stable_events: int = 0
    stable_units: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "reason": self.reason,
            "estimate": _finite(self.estimate),
            "lower": _finite(self.lower),
            "upper": _finite(self.upper),
            "limit": self.limit,
            "e_value": _finite(self.e_value),
            "e_bound": self.e_bound,
            "candidate": {"events": self.candidate_events, "units": self.candidate_units},
            "stable": {"events": self.stable_events, "units": self.stable_units},
        }


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    checks: tuple[CheckResult, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "checks": [check.to_dict() for check in self.checks],
        }


def _finite(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _events(
    spec: AnalysisSpec, name: str, m: Measurements, thresholds: Mapping[str, float]
) -> tuple[int, int] | None:
    """(events, units) of one relative check in one measurement; None when not measurable."""
    if name == "errors":
        return sum(m.errors.get(kind, 0) for kind in spec.error_kinds), m.judged
    if name == "accuracy":
        return m.labelled - m.correct, m.labelled
    threshold = thresholds.get(name.removeprefix("latency>"))
    if threshold is None:
        return None
    return count_above(m.latency, threshold), sum(m.latency.values())


def _update_count(
    track: CountTrack, ratios: FloatArray, log_prior: FloatArray, ce: int, cu: int, se: int, su: int
) -> CountTrack:
    ce, se = min(max(ce, 0), cu), min(max(se, 0), su)
    log_lr = np.asarray(track.log_lr, dtype=np.float64)
    if cu > 0 and su > 0 and ce + se > 0:
        log_lr = log_lr + ratio_log_lr(ratios, cu / (cu + su), ce, ce + se)
    log_e = float(log_e_above(tuple(ratios), log_prior, log_lr))
    return CountTrack(
        tuple(float(x) for x in log_lr),
        max(track.peak_log_e, log_e),
        track.candidate_events + ce,
        track.candidate_units + cu,
        track.stable_events + se,
        track.stable_units + su,
    )


def _rate(events: int, units: int) -> float | None:
    return events / units if units else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def _e(log_e: float) -> float:
    return math.exp(min(log_e, 700.0))


def assess_ratio(
    spec: AnalysisSpec, state: SequentialState, name: str, tolerance: float
) -> CheckResult:
    """A relative check: fail when the candidate's rate is higher, pass when the ratio's upper
    bound is under the tolerance, else inconclusive."""
    track = state.counts[name]
    ratios = np.asarray(state.ratios)
    log_prior = np.asarray(state.log_prior)
    log_lr = np.asarray(track.log_lr)
    m = spec.checks
    fail_bound, pass_bound = m / spec.alpha, m / spec.alpha_promote
    upper = _upper_bound(state.ratios, log_e_below(log_prior, log_lr), math.log(pass_bound))
    lower = _lower_bound(state.ratios, log_prior, log_lr, math.log(fail_bound))
    limit_index = _grid_index(ratios, tolerance)
    c_rate = _rate(track.candidate_events, track.candidate_units)
    s_rate = _rate(track.stable_events, track.stable_units)
    estimate = c_rate / s_rate if c_rate is not None and s_rate else None
    e_value = _e(track.peak_log_e)
    e_now = _e(float(log_e_above(state.ratios, log_prior, log_lr)))
    numbers = (
        f"candidate {track.candidate_events:,}/{track.candidate_units:,} ({_pct(c_rate)}) vs "
        f"stable {track.stable_events:,}/{track.stable_units:,} ({_pct(s_rate)}): "
        f"ratio {_num(estimate)}, anytime bounds {_num(lower)}-{_num(upper)}; "
        f"e-value {_num(e_now)} (max {_num(e_value)}), fails at m/alpha = {_num(fail_bound)}"
    )
    outcome: Outcome
    if track.peak_log_e >= math.log(fail_bound):
        outcome, verdict = "fail", "candidate worse"
    elif name.startswith("latency>") and name.removeprefix("latency>") not in state.latency_ms:
        outcome, verdict = "inconclusive", "the stable release's latency quantile is not known yet"
    elif track.candidate_units == 0 or track.stable_units == 0:
        side = "candidate" if track.candidate_units == 0 else "stable"
        outcome, verdict = "inconclusive", f"no {side} data"
    elif upper <= ratios[limit_index]:
        outcome, verdict = "pass", f"ratio under tolerance {tolerance:g} with confidence"
    else:
        outcome, verdict = "inconclusive", f"ratio not yet shown under tolerance {tolerance:g}"
    return CheckResult(
        name,
        outcome,
        f"{name}: {verdict}; {numbers}",
        estimate,
        lower,
        upper,
        tolerance,
        e_value,
        fail_bound,
        track.candidate_events,
        track.candidate_units,
        track.stable_events,
        track.stable_units,
    )


def assess_rate(spec: AnalysisSpec, track: RateTrack, name: str, limit: float) -> CheckResult:
    """An absolute check: fail when the candidate's rate is shown above `limit`, pass when it
    is shown below."""
    m = spec.checks
    fail_bound, pass_bound = m / spec.alpha, m / spec.alpha_promote
    a, b = spec.prior_c * limit, spec.prior_c * (1 - limit)
    k, n = track.events, track.units
    log_e_under = beta_binomial_log_e(k, n, limit, a, b, "below")
    lower = binomial_confidence(k, n, spec.alpha / m)[0]
    upper = binomial_confidence(k, n, spec.alpha_promote / m)[1]
    rate = _rate(k, n)
    if name == "error_rate":
        what = "error rate"
    elif name == "disagreement":
        what = "mirrored answers unlike the live ones"
    else:
        what = f"share above {spec.max_p99_ms:g} ms"
    numbers = (
        f"{what} {_pct(rate)} ({k:,}/{n:,}), anytime bounds {_pct(lower)}-{_pct(upper)}; "
        f"e-value above the limit {_num(_e(track.peak_log_e))} (max), fails at m/alpha = "
        f"{_num(fail_bound)}; e-value under the limit {_num(_e(log_e_under))}, passes at "
        f"m/alpha_promote = {_num(pass_bound)}"
    )
    outcome: Outcome
    if track.peak_log_e >= math.log(fail_bound):
        outcome, verdict = "fail", f"candidate above {_pct(limit)}"
    elif n == 0:
        outcome, verdict = "inconclusive", "no candidate data"
    elif log_e_under >= math.log(pass_bound):
        outcome, verdict = "pass", f"under {_pct(limit)} with confidence"
    else:
        outcome, verdict = "inconclusive", f"not yet shown under {_pct(limit)}"
    return CheckResult(
        name,
        outcome,
        f"{name}: {verdict}; {numbers}",
        rate,
        lower,
        upper,
        limit,
        _e(track.peak_log_e),
        fail_bound,
        k,
        n,
    )


def assess_drift(spec: AnalysisSpec, state: SequentialState) -> CheckResult:
    """Prediction drift as a magnitude: fail when the distance is shown above the margin."""
    margin = spec.drift_margin
    assert margin is not None
    m = spec.checks
    lower, estimate, _ = js_distance_bounds(
        state.stable_predictions, state.candidate_predictions, spec.alpha / m
    )
    _, _, upper = js_distance_bounds(
        state.stable_predictions, state.candidate_predictions, spec.alpha_promote / m
    )
    lower = max(lower, state.drift_peak)
    nc, ns = sum(state.candidate_predictions.values()), sum(state.stable_predictions.values())
    numbers = (
        f"Jensen-Shannon distance {_num(estimate)} (bounds {lower:.3f}-{upper:.3f}, anytime, "
        f"at {1 - spec.alpha / m:.1%} / {1 - spec.alpha_promote / m:.1%}) over "
        f"{nc:,} candidate and {ns:,} stable predictions, margin {margin:g}"
    )
    outcome: Outcome
    if lower > margin:
        outcome, verdict = "fail", "predictions differ by more than the margin"
    elif nc == 0 or ns == 0:
        outcome, verdict = "inconclusive", "no predictions to compare"
    elif upper <= margin:
        outcome, verdict = "pass", "predictions within the margin with confidence"
    else:
        outcome, verdict = "inconclusive", "drift not yet shown within the margin"
    return CheckResult(
        "drift",
        outcome,
        f"drift: {verdict}; {numbers}",
        estimate,
        lower,
        upper,
        margin,
        candidate_units=nc,
        stable_units=ns,
    )


def _update(
    spec: AnalysisSpec,
    state: SequentialState,
    stable: Measurements | None,
    candidate: Measurements | None,
) -> SequentialState:
    ratios = np.asarray(state.ratios)
    log_prior = np.asarray(state.log_prior)
    thresholds = state.latency_ms
    counts = dict(state.counts)
    for name in spec.ratio_checks:
        track = counts.get(name) or CountTrack(tuple(0.0 for _ in state.ratios))
        if stable is not None and candidate is not None:
            c = _events(spec, name, candidate, thresholds)
            s = _events(spec, name, stable, thresholds)
            if c is not None and s is not None:
                track = _update_count(track, ratios, log_prior, c[0], c[1], s[0], s[1])
        counts[name] = track
    rates = dict(state.rates)
    for name, limit in spec.rate_checks.items():
        track_r = rates.get(name) or RateTrack()
        if candidate is not None:
            if name == "error_rate":
                k = sum(candidate.errors.get(kind, 0) for kind in spec.error_kinds)
                n = candidate.judged
            elif name == "disagreement":
                k, n = candidate.compared - candidate.agreed, candidate.compared
            else:
                assert spec.max_p99_ms is not None
                k, n = (
                    count_above(candidate.latency, spec.max_p99_ms),
                    sum(candidate.latency.values()),
                )
            k, n = track_r.events + min(k, n), track_r.units + n
            a, b = spec.prior_c * limit, spec.prior_c * (1 - limit)
            log_e = beta_binomial_log_e(k, n, limit, a, b, "above")
            track_r = RateTrack(k, n, max(track_r.peak_log_e, log_e))
        rates[name] = track_r
    stable_predictions = dict(state.stable_predictions)
    candidate_predictions = dict(state.candidate_predictions)
    if stable is not None and candidate is not None:
        for into, more in ((stable_predictions, stable), (candidate_predictions, candidate)):
            for key, n in more.predictions.items():
                into[key] = into.get(key, 0) + n
    if stable is not None:
        # Learned after this interval's counts, so a threshold only judges later intervals.
        thresholds = _learn_thresholds(spec, stable.latency, thresholds)
    new_requests = candidate.judged if candidate is not None else 0
    return replace(
        state,
        latency_ms=thresholds,
        counts=counts,
        rates=rates,
        stable_predictions=stable_predictions,
        candidate_predictions=candidate_predictions,
        candidate_requests=state.candidate_requests + new_requests,
        step_requests=state.step_requests + new_requests,
    )


def assess(
    spec: AnalysisSpec,
    state: SequentialState,
    stable: Measurements | None,
    candidate: Measurements | None,
    *,
    elapsed_s: float,
) -> tuple[SequentialState, Verdict]:
    """Add one interval's measurements to the evidence and judge the candidate.

    `stable` and `candidate` are the *new* measurements since the last assessment, over the
    same interval and at one traffic split (assess at every weight change); None when they
    could not be read. `elapsed_s` is the time since the current step began.
    Returns the new state (persist it) and the verdict:

    - fail: a check failed (its e-value reached m/α, a bound was shown exceeded, or drift was
      shown above its margin), or the deadline passed before the step could pass;
    - pass: every check is within its limit with confidence, or the step's budget of time
      and candidate requests ended with no failure and every check had data;
    - inconclusive: keep watching.
    """
    state = _update(spec, state, stable, candidate)
    results: list[CheckResult] = [
        assess_ratio(spec, state, name, tol) for name, tol in spec.ratio_checks.items()
    ]
    results += [
        assess_rate(spec, state.rates[name], name, limit)
        for name, limit in spec.rate_checks.items()
    ]
    if spec.drift_margin is not None:
        drift = assess_drift(spec, state)
        results.append(drift)
        if drift.lower is not None and drift.lower > state.drift_peak:
            state = replace(state, drift_peak=drift.lower)
    return state, assess_verdict(spec, state, tuple(results), elapsed_s, stable, candidate)


def _has_data(spec: AnalysisSpec, check: CheckResult) -> bool:
    if check.candidate_units < spec.min_samples:
        return False
    relative = check.name in spec.ratio_checks or check.name == "drift"
    return not relative or check.stable_units >= spec.min_samples


def assess_verdict(
    spec: AnalysisSpec,
    state: SequentialState,
    checks: tuple[CheckResult, ...],
    elapsed_s: float,
    stable: Measurements | None = None,
    candidate: Measurements | None = None,
) -> Verdict:
    """Combine the checks with the step's budget and deadline."""
    failed = [c.reason for c in checks if c.outcome == "fail"]
    if failed:
        return Verdict("fail", tuple(failed), checks)
    missing = [
        f"{role} measurements missing"
        for role, m in (("stable", stable), ("candidate", candidate))
        if m is None
    ]
    thin = [c for c in checks if not _has_data(spec, c)]
    budget_met = elapsed_s >= spec.budget_s and state.step_requests >= spec.budget_requests
    if state.step_requests > 0 and checks and all(c.outcome == "pass" for c in checks):
        return Verdict("pass", ("every check is within its limit with confidence",), checks)
    if budget_met and not thin:
        return Verdict(
            "pass",
            (
                f"step budget met with no failure: {elapsed_s:,.0f} s ≥ {spec.budget_s:,.0f} s "
                f"and {state.step_requests:,} ≥ {spec.budget_requests:,} candidate requests",
            ),
            checks,
        )
    waiting: list[str] = [*missing]
    if state.step_requests == 0:
        waiting.append("the candidate has had no traffic in this step")
    elif not budget_met:
        waiting.append(
            f"step budget not met: {elapsed_s:,.0f}/{spec.budget_s:,.0f} s, "
            f"{state.step_requests:,}/{spec.budget_requests:,} candidate requests"
        )
    waiting += [
        f"{c.name}: too little data ({c.candidate_units:,} candidate, {c.stable_units:,} "
        f"stable, need {spec.min_samples:,})"
        for c in thin
    ]
    if elapsed_s >= spec.deadline_s:
        return Verdict(
            "fail",
            (f"deadline of {spec.deadline_s:,.0f} s passed without a pass", *waiting),
            checks,
        )
    return Verdict("inconclusive", tuple(waiting) or ("keep watching",), checks)
