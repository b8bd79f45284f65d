"""Bulkheads: a fixed concurrency limit, or one that adapts to latency."""

from resilience.bulkhead.adaptive import AdaptiveBulkhead
from resilience.bulkhead.bulkhead import Bulkhead
from resilience.bulkhead.limits import AIMD, Gradient, LimitAlgorithm

__all__ = ["AIMD", "AdaptiveBulkhead", "Bulkhead", "Gradient", "LimitAlgorithm"]
