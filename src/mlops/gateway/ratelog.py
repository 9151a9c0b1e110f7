"""`RateLimitedLog`, kept importable from here; it lives in `mlops.ratelog`."""

from mlops.ratelog import RateLimitedLog

__all__ = ["RateLimitedLog"]
