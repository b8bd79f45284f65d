"""The six rate-limiting algorithms (pure transition functions)."""

from resilience.ratelimit.algorithms.base import Algorithm
from resilience.ratelimit.algorithms.fixed_window import FixedWindow
from resilience.ratelimit.algorithms.sliding_counter import SlidingWindowCounter
from resilience.ratelimit.algorithms.sliding_log import SlidingWindowLog
from resilience.ratelimit.algorithms.virtual_time import GCRA, LeakyBucket, TokenBucket

__all__ = [
    "GCRA",
    "Algorithm",
    "FixedWindow",
    "LeakyBucket",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
]
