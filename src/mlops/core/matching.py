"""Whether a served answer matches what it is compared with: a delayed label, or the live
answer a shadow's mirrored copy is compared to."""

from __future__ import annotations

from typing import Any


def matches(prediction: Any, label: Any) -> bool:
    """Whether a logged prediction (a list, one item per row) equals its delayed label."""
    if isinstance(prediction, list) and not isinstance(label, list):
        prediction = prediction[0] if len(prediction) == 1 else prediction
    if isinstance(prediction, int | float) and isinstance(label, int | float):
        return float(prediction) == float(label)
    return bool(prediction == label) or str(prediction) == str(label)
