"""A deployment's traffic split: which release revision serves a request, and which ones get a
shadow copy.

Sticky routing uses weighted rendezvous hashing: each (routing key, revision) pair gets a
score `-weight / ln(u)`, with `u` a uniform hash of the pair, and the highest score wins.
A revision then receives exactly its share of keys, a key stays on its revision while the
weights stay the same, and when a weight grows only keys moving *to* that revision move.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlops.errors import InvalidInput

_TWO_64 = float(2**64)


def unit_hash(key: str, salt: str) -> float:
    """A uniform number in (0, 1) from a key and a salt, stable across processes."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _TWO_64


@dataclass(frozen=True)
class Split:
    """The traffic of one deployment: revisions with weights (summing to 100) and shadows."""

    weights: tuple[tuple[int, float], ...]
    shadows: tuple[tuple[int, float], ...] = ()
    """(revision, percent of requests copied to it); responses from shadows are discarded."""

    def __post_init__(self) -> None:
        check_split(dict(self.weights), dict(self.shadows))

    @classmethod
    def only(cls, revision: int) -> Split:
        return cls(((revision, 100.0),))

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Split:
        weights = data.get("weights") or {}
        shadows = data.get("shadows") or {}
        assert isinstance(weights, Mapping)
        assert isinstance(shadows, Mapping)
        return cls(
            tuple(sorted((int(k), float(v)) for k, v in weights.items())),
            tuple(sorted((int(k), float(v)) for k, v in shadows.items())),
        )

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {
            "weights": {str(rev): w for rev, w in self.weights},
            "shadows": {str(rev): s for rev, s in self.shadows},
        }

    @property
    def revisions(self) -> frozenset[int]:
        return frozenset(rev for rev, _ in self.weights) | frozenset(rev for rev, _ in self.shadows)

    def weight_of(self, revision: int) -> float:
        return dict(self.weights).get(revision, 0.0)

    def pick(self, key: str | None, draw: float) -> int:
        """The revision for a request: sticky by `key`, else by `draw` (uniform in [0, 1))."""
        live = [(rev, w) for rev, w in self.weights if w > 0]
        if len(live) == 1:
            return live[0][0]
        if key is None:
            acc = 0.0
            for rev, weight in live:
                acc += weight / 100.0
                if draw < acc:
                    return rev
            return live[-1][0]
        return max(live, key=lambda rw: -rw[1] / math.log(unit_hash(key, str(rw[0]))))[0]

    def shadow_targets(self, key: str | None, draw: float) -> tuple[int, ...]:
        """The revisions that get a copy of this request."""
        if not self.shadows:
            return ()
        out = []
        for rev, share in self.shadows:
            u = unit_hash(key, f"shadow-{rev}") if key is not None else draw
            if u < share / 100.0:
                out.append(rev)
        return tuple(out)


def check_split(weights: Mapping[int, float], shadows: Mapping[int, float]) -> None:
    if not weights:
        raise InvalidInput("a traffic split needs at least one revision with a weight")
    for rev, value in [*weights.items(), *shadows.items()]:
        if rev < 1:
            raise InvalidInput(f"invalid revision {rev} in the traffic split")
        if not 0 <= value <= 100 or math.isnan(value):
            raise InvalidInput(f"weight {value} of revision {rev} is not a percentage (0-100)")
    total = sum(weights.values())
    if abs(total - 100.0) > 1e-6:
        raise InvalidInput(f"weights add up to {total:g}, not 100")
    both = set(weights) & {rev for rev, share in shadows.items() if share > 0}
    live = {rev for rev, w in weights.items() if w > 0}
    if both & live:
        raise InvalidInput(f"revision {sorted(both & live)[0]} cannot take live and shadow traffic")
