"""Reads that every open page of a worker shares: the overview of 200 deployments, or one
deployment's story, is read from the store at most once per `ttl_s` however many people
watch it (sooner when the store's change counter moves: a release, a rollback, a split)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

TTL_S = 0.5
KEYS_MAX = 256


class SharedReads:
    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s, self._clock = ttl_s, clock
        self._lock = threading.RLock()
        self._found: OrderedDict[Hashable, tuple[float, int, Any]] = OrderedDict()

    def get(self, key: Hashable, seq: int, compute: Callable[[], Any]) -> Any:
        """The value of `key`, computed again when older than `ttl_s` or read before the
        change counter reached `seq`; one computation at a time per worker."""
        with self._lock:
            found = self._found.get(key)
            now = self._clock()
            if found is not None and now - found[0] < self._ttl_s and found[1] == seq:
                return found[2]
            value = compute()
            self._found[key] = (self._clock(), seq, value)
            self._found.move_to_end(key)
            while len(self._found) > KEYS_MAX:
                self._found.popitem(last=False)
            return value
