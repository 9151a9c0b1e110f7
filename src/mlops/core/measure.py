"""Per-version measurements: counts, error kinds, a log-binned latency histogram, predictions.

Latency bins grow by 10 % each from 50 µs, so any quantile read from them is within 5 % of
the true value, and histograms from many workers add up bin by bin.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ERROR_KINDS = ("exception", "timeout", "invalid_output", "rejected")
REFUSED = "rejected"
"""The kind of a request that failed through its input's fault, not the release's: refused when
decoded, or failing on the release it is compared with too (docs/analysis.md)."""
LATENCY_BASE_MS = 0.05
LATENCY_GROWTH = 1.1
LATENCY_LAST_BIN = 160  # 0.05 ms * 1.1**160 ≈ 200 s


def latency_bin(ms: float) -> int:
    if ms <= LATENCY_BASE_MS:
        return 0
    return min(int(math.log(ms / LATENCY_BASE_MS) / math.log(LATENCY_GROWTH)) + 1, LATENCY_LAST_BIN)


def bin_upper_ms(index: int) -> float:
    return float(LATENCY_BASE_MS * LATENCY_GROWTH**index)


def quantile_ms(bins: Mapping[int, int], q: float) -> float | None:
    """The q-quantile of a binned latency histogram (the upper edge of its bin)."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_upper_ms(index)
    return bin_upper_ms(max(bins))


def count_above(bins: Mapping[int, int], threshold_ms: float) -> int:
    """Requests whose latency bin lies wholly above `threshold_ms`."""
    return sum(n for index, n in bins.items() if bin_upper_ms(index - 1) >= threshold_ms)


VALUE_EDGES = (*(m * 10.0**e for e in range(-3, 6) for m in (1.0, 2.0, 5.0)), 1e6)
"""Lower edges of the bins a numeric prediction's magnitude is counted in (1, 2, 5 per decade,
from 0.001 up; past the last edge, one open bin), the same for every model: 57 keys at most
with the sign and "0", so a regression's series in /metrics and in the store stay few."""
KEY_CHARS = 64
OTHER = "other"


def prediction_key(value: Any, kind: str) -> str:
    """The bucket a prediction is counted in: a classifier's class (text, cut at 64
    characters), or for any other number the fixed bin of its magnitude, signed ("0" for
    magnitudes under 0.001, "-2" for values in (-5, -2]); anything else is "other"."""
    if isinstance(value, bool) or (kind == "classification" and isinstance(value, int | str)):
        return str(value)[:KEY_CHARS]
    if isinstance(value, int | float):
        magnitude = abs(float(value))
        if not math.isfinite(magnitude):
            return OTHER
        if magnitude < VALUE_EDGES[0]:
            return "0"
        edge = VALUE_EDGES[bisect.bisect_right(VALUE_EDGES, magnitude) - 1]
        return f"{'-' if value < 0 else ''}{edge:g}"
    if isinstance(value, str):
        return value[:KEY_CHARS]
    return OTHER


def add_counts(into: dict[Any, int], more: Mapping[Any, int]) -> dict[Any, int]:
    for key, n in more.items():
        into[key] = into.get(key, 0) + n
    return into


@dataclass(frozen=True)
class Measurements:
    """Everything measured for one revision of a deployment in one role, over a window."""

    deployment: str
    revision: int
    role: str = "live"
    requests: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    latency: Mapping[int, int] = field(default_factory=dict)
    predictions: Mapping[str, int] = field(default_factory=dict)
    labelled: int = 0
    correct: int = 0
    compared: int = 0
    """Mirrored requests whose answer could be compared with the live answer (shadow role)."""
    agreed: int = 0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def judged(self) -> int:
        """Requests the release is judged on: those refused for their input do not count, so
        sending bad input cannot fill a step's budget or dilute a rate."""
        return self.requests - self.errors.get(REFUSED, 0)

    @property
    def error_rate(self) -> float | None:
        return self.error_count / self.requests if self.requests else None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def agreement(self) -> float | None:
        """The share of mirrored requests answered as the live release answered them."""
        return self.agreed / self.compared if self.compared else None

    def latency_ms(self, q: float) -> float | None:
        return quantile_ms(self.latency, q)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurements:
        """Read back `to_dict()`: what a remote client receives."""
        return cls(
            deployment=d["deployment"],
            revision=d["revision"],
            role=d["role"],
            requests=d["requests"],
            errors={k: n for k, n in d["errors"].items() if n},
            latency={int(k): n for k, n in d["latency_bins"].items()},
            predictions=d["predictions"],
            labelled=d["labelled"],
            correct=d["correct"],
            compared=d["compared"],
            agreed=d["agreed"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "revision": self.revision,
            "role": self.role,
            "requests": self.requests,
            "errors": {kind: self.errors.get(kind, 0) for kind in ERROR_KINDS},
            "error_rate": self.error_rate,
            "latency_ms": {
                "p50": self.latency_ms(0.5),
                "p90": self.latency_ms(0.9),
                "p99": self.latency_ms(0.99),
            },
            "latency_bins": {str(k): v for k, v in sorted(self.latency.items())},
            "predictions": dict(sorted(self.predictions.items())),
            "labelled": self.labelled,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement": self.agreement,
        }


def combine(parts: Iterable[Measurements]) -> Measurements | None:
    """Add up measurements of the same deployment, revision and role."""
    items = list(parts)
    if not items:
        return None
    first = items[0]
    errors: dict[str, int] = {}
    latency: dict[int, int] = {}
    predictions: dict[str, int] = {}
    for m in items:
        add_counts(errors, m.errors)
        add_counts(latency, m.latency)
        add_counts(predictions, m.predictions)
    return Measurements(
        first.deployment,
        first.revision,
        first.role,
        sum(m.requests for m in items),
        errors,
        latency,
        predictions,
        sum(m.labelled for m in items),
        sum(m.correct for m in items),
        sum(m.compared for m in items),
        sum(m.agreed for m in items),
    )
