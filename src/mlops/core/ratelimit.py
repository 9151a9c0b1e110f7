"""A token bucket: at most `rate` events a second, in bursts of up to `burst`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def take(self, now: float) -> bool:
        """Whether one more event may pass at time `now` (seconds, any monotonic origin)."""
        if self.available(now) >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def available(self, now: float) -> float:
        """The events that may pass at `now`, without taking one."""
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens

    def wait(self) -> float:
        """Seconds until one more event may pass, as of the last call."""
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else float("inf")
