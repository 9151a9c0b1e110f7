"""A fence handed to a child process in MLOPS_FENCE comes back as it was, and anything else
set there is refused with a clear message rather than a crash."""

from __future__ import annotations

import pytest

from mlops.errors import InvalidInput
from mlops.store.leases import Fence


def test_a_fence_survives_the_environment() -> None:
    fence = Fence("controller", "vm:1234:ab12cd", 7)
    assert Fence.decode(fence.encode()) == fence


@pytest.mark.parametrize("text", ["", "garbage", "x:controller:vm", "7:controller"])
def test_anything_else_in_the_environment_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="MLOPS_FENCE: not a fence"):
        Fence.decode(text)
