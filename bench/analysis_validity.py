# ruff: noqa: RUF002, RUF003  (the notation of the statistics: Greek letters, ×)
"""Is the analysis valid under peeking, and how fast does it catch a bad candidate?

A simulation, no server. Each rollout sends requests to a deployment; each request goes to the
candidate with probability θ0 (its traffic share), independently (per-request random routing),
and then, from the version that serves it, may fail (error), may be slower than the stable
release's p99 learned beforehand (latency), and may get a delayed label that says the
prediction was wrong (accuracy). The three relative checks of `mlops.core.analysis` run
together (m = 3, so each fails at e-value m/α = 60 for α = 0.05), and the decision is checked
after every request. The e-processes only move when an event arrives, so checking at every
event is checking at every request; this is vectorised with numpy over runs and events using
the module's own primitives (`ratio_log_lr`, `log_e_above`, `prior_log_weights`).

Traffic model (per request, identical for both versions in A/A runs):
- errors: 1 % (scaled by the load factor in the diurnal and bursty scenarios);
- latency: lognormal, median 20 ms, p99/p50 = 3 (σ = 0.472), times a load factor^0.5 and ×1.6
  during bursts; the threshold is the p99 of 20,000 stable requests before the rollout, read
  from a `latency_bin` histogram with `quantile_ms` (an exceedance is what `count_above`
  counts: a request in a bin wholly above that p99);
- accuracy: a quarter of requests get a label; 10 % of labelled predictions are wrong.

Scenarios: steady; diurnal (request rate × (1 + 0.5 sin), a 3:1 peak-to-trough ratio over a
24 h cycle, errors ∝ load, latency ∝ load^0.5, two cycles per rollout); bursty (segments of
~800 requests at 5× rate, about 30 % of requests, with errors ×4 and latency ×1.6 for both
versions); canary steps (share 1 → 5 → 20 → 50 %, a quarter of the requests each, which
checks that a changing θ0 keeps the test valid); and the controller's own path: `assess()`
called on `Measurements` in intervals of 2,000 requests through the same canary steps.

Beside it, the same A/A runs judged by a naive test: a one-sided two-proportion z-test per
metric at α/3 on cumulative counts, looked at every 1,000 requests (and, for reference,
looked at once, at the end).

Detection (steady, 5 % candidate traffic): errors +50 % and ×3, and a tail regression (5 % of
candidate requests 3× slower). The Mann-Whitney baseline is a fixed-sample one-sided test on
raw latencies at the same per-metric level α/3 (and at 0.05), sized for 80 % power by
Noether's formula and checked by simulation.

"Requests" are total requests to the deployment (candidate and stable): the targets are
stated for a deployment at 5 % candidate traffic, and that is what the operator waits for.

    .venv/bin/python bench/analysis_validity.py [--runs 2000] [--detect-runs 1000]
        [--assess-runs 500] [--horizon 200000] [--seed 1] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy
from scipy import stats

from mlops.core.analysis import (
    AnalysisSpec,
    SequentialState,
    assess,
    log_e_above,
    prior_log_weights,
    ratio_grid,
)
from mlops.core.measure import (
    LATENCY_BASE_MS,
    LATENCY_GROWTH,
    LATENCY_LAST_BIN,
    Measurements,
    count_above,
    latency_bin,
    quantile_ms,
)

ALPHA = 0.05
M = 3
BLOCK = 100  # requests simulated at a time under constant conditions; events keep their order
ERROR_RATE = 0.01
LABEL_RATE = 0.25
WRONG_RATE = 0.10
MEDIAN_MS = 20.0
SIGMA = math.log(3.0) / stats.norm.ppf(0.99)  # p99 / p50 = 3
BASELINE_REQUESTS = 20_000
CHECK_EVERY = 1_000
METRICS = ("errors", "latency", "accuracy")

RATIOS = ratio_grid()
LOG_RATIOS = np.log(np.asarray(RATIOS))
LOG_BOUND = math.log(M / ALPHA)
PRIOR_C = AnalysisSpec().prior_c  # --prior-c changes it for the per-request simulations


# -- the world ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conditions:
    """Per run and block: the candidate's share and the multipliers both versions share."""

    share: np.ndarray  # (blocks,)
    load: np.ndarray  # (runs, blocks): multiplies the error rate
    slow: np.ndarray  # (runs, blocks): multiplies latency


@dataclass(frozen=True)
class Candidate:
    error_factor: float = 1.0
    slow_fraction: float = 0.0  # share of candidate requests made `slow_factor` times slower
    slow_factor: float = 1.0


def steady(rng: np.random.Generator, runs: int, blocks: int) -> Conditions:
    ones = np.ones((runs, blocks))
    return Conditions(np.full(blocks, 0.05), ones, ones)


def diurnal(rng: np.random.Generator, runs: int, blocks: int) -> Conditions:
    # Request rate λ(t) = 1 + 0.5 sin(2πt): peak/trough = 3. Requests are spread in time by
    # the rate, so the load a request sees is λ at the time it arrives: invert Λ(t).
    t = np.linspace(0.0, 2.0, 20_001)
    cum = t - 0.5 * (np.cos(2 * np.pi * t) - 1) / (2 * np.pi)
    phase = rng.random((runs, 1)) * 1.0  # each run starts at a random hour
    out = np.empty((runs, blocks))
    for i in range(runs):
        start = np.interp(phase[i, 0], t, cum)
        target = start + (np.arange(blocks) + 0.5) / blocks * (cum[-1] - cum[0]) * 0.999
        when = np.interp(target % cum[-1], cum, t)
        out[i] = 1 + 0.5 * np.sin(2 * np.pi * when)
    return Conditions(np.full(blocks, 0.05), out, out**0.5)


def bursty(rng: np.random.Generator, runs: int, blocks: int) -> Conditions:
    # Alternating quiet segments (mean 2,000 requests) and bursts (mean 800 requests, 5× the
    # rate): about 30 % of requests arrive in bursts, when errors are 4× and latency 1.6×.
    burst = np.zeros((runs, blocks), dtype=bool)
    for i in range(runs):
        pos, on = 0, bool(rng.random() < 0.3)
        while pos < blocks:
            length = int(rng.geometric(1 / (8 if on else 20)))
            burst[i, pos : pos + length] = on
            pos, on = pos + length, not on
    return Conditions(np.full(blocks, 0.05), np.where(burst, 4.0, 1.0), np.where(burst, 1.6, 1.0))


def canary(rng: np.random.Generator, runs: int, blocks: int) -> Conditions:
    steps = np.array([0.01, 0.05, 0.20, 0.50])
    share = steps[np.minimum(np.arange(blocks) * 4 // blocks, 3)]
    ones = np.ones((runs, blocks))
    return Conditions(share, ones, ones)


def latency_bins(ms: np.ndarray) -> np.ndarray:
    """`measure.latency_bin`, vectorised."""
    raw = np.floor(
        np.log(np.maximum(ms, LATENCY_BASE_MS) / LATENCY_BASE_MS) / math.log(LATENCY_GROWTH)
    )
    return np.where(
        ms <= LATENCY_BASE_MS, 0, np.minimum(raw.astype(np.int64) + 1, LATENCY_LAST_BIN)
    )


def baseline_histogram(rng: np.random.Generator) -> dict[int, int]:
    """The stable release's latency histogram over 20,000 requests before the rollout."""
    ms = rng.lognormal(math.log(MEDIAN_MS), SIGMA, BASELINE_REQUESTS)
    index, counts = np.unique(latency_bins(ms), return_counts=True)
    return dict(zip(index.tolist(), counts.tolist(), strict=True))


def baseline_thresholds(rng: np.random.Generator, runs: int) -> np.ndarray:
    """Each run's stable p99, learned before the candidate gets traffic."""
    out = np.empty(runs)
    for i in range(runs):
        value = quantile_ms(baseline_histogram(rng), 0.99)
        assert value is not None
        out[i] = value
    return out


def exceed_probability(threshold: np.ndarray, slow: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """P(latency > threshold) for a lognormal request made `slow`·`factor` times slower."""
    z = (np.log(threshold[:, None]) - np.log(MEDIAN_MS * slow * factor)) / SIGMA
    return np.asarray(stats.norm.sf(z))


@dataclass(frozen=True)
class Counts:
    """Per run and block: candidate units, candidate events, stable units, stable events."""

    cu: np.ndarray
    ce: np.ndarray
    su: np.ndarray
    se: np.ndarray


def simulate(
    rng: np.random.Generator, cond: Conditions, cand: Candidate, threshold: np.ndarray
) -> dict[str, Counts]:
    runs, blocks = cond.load.shape
    nc = rng.binomial(BLOCK, np.broadcast_to(cond.share, (runs, blocks)))
    ns = BLOCK - nc
    p_err = np.minimum(ERROR_RATE * cond.load, 1.0)
    p_err_c = np.minimum(p_err * cand.error_factor, 1.0)
    p_lat = exceed_probability(threshold, cond.slow)
    p_lat_c = (1 - cand.slow_fraction) * p_lat + cand.slow_fraction * exceed_probability(
        threshold, cond.slow, cand.slow_factor
    )
    lc, ls = rng.binomial(nc, LABEL_RATE), rng.binomial(ns, LABEL_RATE)
    return {
        "errors": Counts(nc, rng.binomial(nc, p_err_c), ns, rng.binomial(ns, p_err)),
        "latency": Counts(nc, rng.binomial(nc, p_lat_c), ns, rng.binomial(ns, p_lat)),
        "accuracy": Counts(lc, rng.binomial(lc, WRONG_RATE), ls, rng.binomial(ls, WRONG_RATE)),
    }


# -- the sequential test, after every request ---------------------------------------------------


def first_crossing(
    rng: np.random.Generator, counts: Counts, share: np.ndarray, log_prior: np.ndarray
) -> np.ndarray:
    """Per run, the request at which the e-process first reaches m/α (inf when it never does).

    Events of a block are put in a random order at random positions in the block. With every
    grid ratio above 1, the mixture rises only at candidate events, so its running maximum is
    attained at one: the e-value is computed there.
    """
    runs, blocks = counts.ce.shape
    out = np.full(runs, np.inf)
    steps, step_of_block = np.unique(share, return_inverse=True)
    g = np.log1p(steps[:, None] * (np.asarray(RATIOS)[None, :] - 1.0))  # (steps, grid)
    chunk = max(1, 2_000_000 // max(1, int(counts.ce.sum() + counts.se.sum()) // runs))
    for lo in range(0, runs, chunk):
        hi = min(runs, lo + chunk)
        kc, ks = counts.ce[lo:hi].ravel(), counts.se[lo:hi].ravel()
        tot = kc + ks
        n_ev = int(tot.sum())
        if n_ev == 0:
            continue
        cell = np.repeat(np.arange(tot.size), tot)
        run = cell // blocks
        blk = cell % blocks
        first_in_cell = np.repeat(np.cumsum(tot) - tot, tot)
        src = (np.arange(n_ev) - first_in_cell) < np.repeat(kc, tot)
        key = rng.random(n_ev)
        order = np.lexsort((key, blk, run))
        run, blk, src, key = run[order], blk[order], src[order], key[order]
        starts = np.searchsorted(run, np.arange(hi - lo))
        k_cum = np.cumsum(src)
        base_k = np.where(starts > 0, k_cum[np.maximum(starts - 1, 0)], 0)
        k = k_cum - base_k[run]
        step = step_of_block[blk]
        per_step = []
        for s in range(len(steps)):
            c = np.cumsum(step == s)
            base = np.where(starts > 0, c[np.maximum(starts - 1, 0)], 0)
            per_step.append(c - base[run])
        rows = np.nonzero(src)[0]
        hit_rows: list[np.ndarray] = []
        for a in range(0, rows.size, 100_000):
            r = rows[a : a + 100_000]
            log_lr = k[r, None] * LOG_RATIOS[None, :]
            for s in range(len(steps)):
                log_lr -= per_step[s][r, None] * g[s][None, :]
            log_e = log_e_above(RATIOS, log_prior, log_lr)
            hit_rows.append(r[log_e >= LOG_BOUND])
        hits = np.concatenate(hit_rows)
        if hits.size:
            first_runs, first_idx = np.unique(run[hits], return_index=True)
            h = hits[first_idx]
            out[lo + first_runs] = (blk[h] + key[h]) * BLOCK
    return out


def sequential(
    rng: np.random.Generator, data: dict[str, Counts], cond: Conditions
) -> dict[str, np.ndarray]:
    log_prior = prior_log_weights(RATIOS, float(cond.share[0]), PRIOR_C)
    return {name: first_crossing(rng, data[name], cond.share, log_prior) for name in METRICS}


# -- the naive test, peeking every 1,000 requests -----------------------------------------


def naive(data: dict[str, Counts], every: int = CHECK_EVERY, last_only: bool = False) -> np.ndarray:
    """First request at which a one-sided two-proportion z-test at α/m rejects (inf: never)."""
    z_crit = stats.norm.isf(ALPHA / M)
    first = None
    for name in METRICS:
        c = data[name]
        per = every // BLOCK
        idx = np.arange(per - 1, c.ce.shape[1], per)
        if last_only:
            idx = idx[-1:]
        cum = {
            f: np.cumsum(getattr(c, f), axis=1)[:, idx].astype(float)
            for f in ("cu", "ce", "su", "se")
        }
        pc = cum["ce"] / np.maximum(cum["cu"], 1)
        ps = cum["se"] / np.maximum(cum["su"], 1)
        pool = (cum["ce"] + cum["se"]) / np.maximum(cum["cu"] + cum["su"], 1)
        var = pool * (1 - pool) * (1 / np.maximum(cum["cu"], 1) + 1 / np.maximum(cum["su"], 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(var > 0, (pc - ps) / np.sqrt(var), 0.0)
        reject = z > z_crit
        when = np.where(reject.any(axis=1), (idx[np.argmax(reject, axis=1)] + 1) * BLOCK, np.inf)
        first = when if first is None else np.minimum(first, when)
    assert first is not None
    return first


# -- the controller's path: assess() on Measurements ---------------------------------------------


def through_assess(
    rng: np.random.Generator,
    make: Callable[[np.random.Generator, int, int], Conditions],
    runs: int,
    horizon: int,
    interval: int,
    cand: Candidate,
) -> tuple[np.ndarray, float]:
    """First request at which `assess` fails (inf: never), and the mean time of one call."""
    spec = AnalysisSpec(
        error_tolerance=1.25,
        latency_tolerance=1.25,
        accuracy_tolerance=1.25,
        budget_s=1e12,
        deadline_s=1e12,
        prior_c=PRIOR_C,
    )
    blocks = horizon // BLOCK
    cond = make(rng, runs, blocks)
    baselines = [Measurements("d", 1, latency=baseline_histogram(rng)) for _ in range(runs)]
    starts = [SequentialState.start(spec, b, float(cond.share[0])) for b in baselines]
    threshold = np.array([state.latency_ms["p99"] for state in starts])
    data = simulate(rng, cond, cand, threshold)
    per = interval // BLOCK
    out = np.full(runs, np.inf)
    started = time.perf_counter()
    calls = 0
    for i in range(runs):
        # Interval histograms keep the two bins that matter: wholly below and wholly above p99.
        below, above = latency_bin(threshold[i] * 0.5), latency_bin(threshold[i] * 1.2)
        assert count_above({below: 1, above: 1}, threshold[i]) == 1
        state = starts[i]
        for j in range(0, blocks, per):
            part = slice(j, j + per)

            def window(c: Counts, f: str, part: slice = part, i: int = i) -> int:
                return int(getattr(c, f)[i, part].sum())

            e, lat, acc = data["errors"], data["latency"], data["accuracy"]
            s_req, c_req = window(e, "su"), window(e, "cu")
            s_lat, c_lat = window(lat, "se"), window(lat, "ce")
            stable = Measurements(
                "d", 1, requests=s_req, errors={"exception": window(e, "se")},
                latency={below: s_req - s_lat, above: s_lat},
                labelled=window(acc, "su"), correct=window(acc, "su") - window(acc, "se"),
            )  # fmt: skip
            candidate = Measurements(
                "d", 2, requests=c_req, errors={"exception": window(e, "ce")},
                latency={below: c_req - c_lat, above: c_lat},
                labelled=window(acc, "cu"), correct=window(acc, "cu") - window(acc, "ce"),
            )  # fmt: skip
            state, verdict = assess(spec, state, stable, candidate, elapsed_s=float(j))
            calls += 1
            if verdict.outcome == "fail":
                out[i] = (j + per) * BLOCK
                break
    return out, (time.perf_counter() - started) / max(calls, 1)


# -- Mann-Whitney, fixed sample ------------------------------------------------------------


def mann_whitney_power(rng: np.random.Generator, n_total: int, level: float, sims: int) -> float:
    """Simulated power of the one-sided Mann-Whitney test on the tail regression at N requests."""
    nc = round(n_total * 0.05)
    ns = n_total - nc
    rejected = 0
    for _ in range(sims):
        s = rng.lognormal(math.log(MEDIAN_MS), SIGMA, ns)
        c = rng.lognormal(math.log(MEDIAN_MS), SIGMA, nc)
        c[rng.random(nc) < 0.05] *= 3.0
        result = stats.mannwhitneyu(c, s, alternative="greater", method="asymptotic")
        rejected += bool(result.pvalue < level)
    return rejected / sims


def mann_whitney_n(
    rng: np.random.Generator, level: float, power: float, sims: int, share: float = 0.05
) -> tuple[int, float]:
    """Total requests for a one-sided Mann-Whitney test to reach `power` on the tail regression.

    Noether's formula N = (z_α + z_β)² / (12 θ(1-θ) (P - 1/2)²), with θ the candidate's share
    and P = P(candidate latency > stable latency); the power at N is then simulated.
    """
    p_slow = stats.norm.cdf(math.log(3.0) / (SIGMA * math.sqrt(2)))
    p = (1 - 0.05) * 0.5 + 0.05 * p_slow
    z = stats.norm.isf(level) + stats.norm.isf(1 - power)
    n_total = math.ceil(z**2 / (12 * share * (1 - share) * (p - 0.5) ** 2))
    return n_total, mann_whitney_power(rng, n_total, level, sims)


# -- figures -------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate_cell(hits: np.ndarray) -> str:
    k, n = int(np.isfinite(hits).sum()), hits.size
    lo, hi = wilson(k, n)
    return f"{k / n:6.2%} [{lo:.2%}, {hi:.2%}]"


def median_ci(times: np.ndarray) -> tuple[float, float, float]:
    """Median and its 95 % order-statistic interval (inf where runs never detected)."""
    x = np.sort(times)
    n = x.size
    half = 1.959964 * math.sqrt(n) / 2
    lo, hi = max(0, math.floor(n / 2 - half) - 1), min(n - 1, math.ceil(n / 2 + half))
    return float(np.median(x)), float(x[lo]), float(x[hi])


def fmt(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x:,.0f}"


def aa_table(rng: np.random.Generator, args: argparse.Namespace) -> None:
    blocks = args.horizon // BLOCK

    print(
        f"\nA/A false-rollback rate: {args.runs:,} rollouts x {args.horizon:,} requests "
        f"(target <= 5 %; [95 % Wilson interval])"
    )
    header = (
        f"{'scenario':<34}{'sequential, every request':<28}{'naive z, every 1,000':<28}"
        f"{'naive z, one look at end':<26}"
    )
    print(header)
    print("-" * len(header))
    scenarios: list[tuple[str, Callable[[np.random.Generator, int, int], Conditions]]] = [
        ("steady 5 %", steady),
        ("diurnal 5 % (rate x3 peak/trough)", diurnal),
        ("bursty 5 %", bursty),
        ("canary steps 1-5-20-50 %", canary),
    ]
    for name, make in scenarios:
        cond = make(rng, args.runs, blocks)
        threshold = baseline_thresholds(rng, args.runs)
        data = simulate(rng, cond, Candidate(), threshold)
        seq = sequential(rng, data, cond)
        first = np.minimum.reduce([seq[m] for m in METRICS])
        print(
            f"{name:<34}{rate_cell(first):<28}{rate_cell(naive(data)):<28}"
            f"{rate_cell(naive(data, last_only=True)):<26}",
            flush=True,
        )
    hits, per_call = through_assess(rng, canary, args.assess_runs, args.horizon, 2_000, Candidate())
    print(
        f"{'assess(), canary, every 2,000':<34}{rate_cell(hits):<28}"
        f"({args.assess_runs} rollouts; {per_call * 1e3:.2f} ms per assess call)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="A/A rollouts per scenario")
    parser.add_argument("--detect-runs", type=int, default=1000, help="rollouts per regression")
    parser.add_argument("--assess-runs", type=int, default=500, help="A/A rollouts via assess()")
    parser.add_argument("--horizon", type=int, default=200_000, help="requests per A/A rollout")
    parser.add_argument("--mw-sims", type=int, default=2000, help="simulations of Mann-Whitney")
    parser.add_argument("--prior-c", type=float, default=AnalysisSpec().prior_c)
    parser.add_argument("--skip-aa", action="store_true", help="detection figures only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a fifth of the runs (~30 s)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.detect_runs = args.runs // 5, args.detect_runs // 5
        args.assess_runs, args.mw_sims = args.assess_runs // 5, args.mw_sims // 5
    global PRIOR_C
    PRIOR_C = args.prior_c
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    print(f"$ {' '.join([sys.executable.split('/')[-1], *sys.argv])}")
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, Python "
        f"{platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"seed {args.seed}"
    )
    print(
        f"alpha {ALPHA}, m = {M} checks together (errors, latency > stable p99, accuracy), "
        f"each fails at e-value {M / ALPHA:g}; prior c = {PRIOR_C:g}; "
        f"checked after every request"
    )
    if not args.skip_aa:
        aa_table(rng, args)
    print(
        f"\nDetection, steady, 1 % errors, 5 % candidate traffic: total requests until rollback "
        f"({args.detect_runs:,} rollouts; median [95 % CI])"
    )
    header = f"{'regression':<40}{'median':>9}  {'95 % CI':<20}{'detected':>9}  {'target':<36}"
    print(header)
    print("-" * len(header))
    cases = [
        ("errors +50 %", Candidate(error_factor=1.5), 600_000, 90_000),
        ("errors x3", Candidate(error_factor=3.0), 100_000, 15_000),
        (
            "tail: 5 % of candidate requests 3x slower",
            Candidate(slow_fraction=0.05, slow_factor=3.0),
            100_000,
            15_000,
        ),
    ]
    mw = {}
    for level in (ALPHA / M, ALPHA):
        mw[level] = mann_whitney_n(rng, level, 0.8, args.mw_sims)
    medians = {}
    for name, cand, horizon, target in cases:
        cond = steady(rng, args.detect_runs, horizon // BLOCK)
        threshold = baseline_thresholds(rng, args.detect_runs)
        data = simulate(rng, cond, cand, threshold)
        seq = sequential(rng, data, cond)
        first = np.minimum.reduce([seq[m] for m in METRICS])
        med, lo, hi = median_ci(first)
        medians[name] = med
        goal = f"<= {target:,}"
        if name.startswith("tail"):
            goal += f" and <= {mw[ALPHA / M][0] / 2:,.0f} (MW/2)"
        ok = med <= target and (not name.startswith("tail") or med <= mw[ALPHA / M][0] / 2)
        print(
            f"{name:<40}{fmt(med):>9}  {fmt(lo) + '-' + fmt(hi):<20}"
            f"{np.isfinite(first).mean():>9.1%}  {goal:<36}{'met' if ok else 'NOT MET'}",
            flush=True,
        )
    hits3, _ = through_assess(
        rng, steady, args.assess_runs, 60_000, 1_000, Candidate(error_factor=3.0)
    )
    med3, lo3, hi3 = median_ci(hits3)
    print(
        f"{'errors x3, via assess() every 1,000':<40}{fmt(med3):>9}  "
        f"{fmt(lo3) + '-' + fmt(hi3):<20}{np.isfinite(hits3).mean():>9.1%}  "
        f"(the controller's path, {args.assess_runs} rollouts)"
    )
    print("\nMann-Whitney, fixed sample, one-sided, sized for 80 % power on the tail regression:")
    tail = medians["tail: 5 % of candidate requests 3x slower"]
    for level, (n_total, power) in mw.items():
        print(
            f"  level {level:.4f}: N = {n_total:,} total requests, {round(n_total * 0.05):,} "
            f"candidate (Noether's formula); simulated power {power:.1%}; the sequential "
            f"median is {n_total / tail:.1f}x faster"
        )
    se = math.sqrt(0.8 * 0.2 / args.mw_sims)
    print(f"  ({args.mw_sims:,} simulations per power figure: standard error {se:.1%})")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
