"""Circuit breaker: count and time windows, slow calls, limited half-open probes.

The breaker (:class:`CircuitBreaker`) classifies outcomes and raises; every
transition goes through a state table from a :class:`BreakerStore`, in memory
by default (:class:`MemoryBreakerStore`) or shared between processes.
"""

from resilience.breaker.breaker import CircuitBreaker
from resilience.breaker.config import BreakerConfig
from resilience.breaker.decider import TripDecider
from resilience.breaker.guard import BreakerGuard
from resilience.breaker.memory import MemoryBreakerStore, MemoryBreakerTable
from resilience.breaker.store import AsyncBreakerOps, BreakerStore, BreakerTable, ClosedRecorder
from resilience.breaker.values import BreakerSnapshot, CircuitState, Permit, Transition
from resilience.breaker.windows import CountWindow, TimeWindow, Window

__all__ = [
    "AsyncBreakerOps",
    "BreakerGuard",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerStore",
    "BreakerTable",
    "CircuitBreaker",
    "CircuitState",
    "ClosedRecorder",
    "CountWindow",
    "MemoryBreakerStore",
    "MemoryBreakerTable",
    "Permit",
    "TimeWindow",
    "Transition",
    "TripDecider",
    "Window",
]
