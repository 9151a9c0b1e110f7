"""Whose fault a failed request is: the release's, or its input's.

Some inputs make any model fail (a magnitude that overflows, a category no encoder has seen).
Counting those against a candidate would let whoever can send requests, and choose their
routing key, roll a good candidate back. So a model failure counts against a release only
when the release it is compared with answers the same input; when both fail, the input is at
fault and the request counts as refused, like one that does not fit the signature
(docs/analysis.md).
"""

from __future__ import annotations

from mlops.core.measure import REFUSED
from mlops.core.routing import Split

MODEL_FAULTS = ("exception", "invalid_output")
"""Failures a model's code causes; a timeout or a full queue says nothing of the input."""


def reference_revision(split: Split, stable: int, revision: int) -> int | None:
    """The revision that tries the input of a failed request of `revision`: the stable release
    for any other revision; for the stable release, the newest revision it is compared with
    (None when nothing else is routed)."""
    if revision != stable:
        return stable
    others = [rev for rev in split.revisions if rev != stable]
    return max(others) if others else None


def assess_fault(kind: str, reference_failed: bool) -> str:
    """The kind a failure is counted as, given whether the reference failed on the same input."""
    return REFUSED if kind in MODEL_FAULTS and reference_failed else kind


def needs_reference(kind: str) -> bool:
    return kind in MODEL_FAULTS
