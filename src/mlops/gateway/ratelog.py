"""Moved to `mlops.ratelog` (the runtime and the controller log through it too); kept for
imports written before the move."""

from mlops.ratelog import RateLimitedLog

__all__ = ["RateLimitedLog"]
