"""State stores.  ``MemoryStore`` is the embedded default (``store=None``)."""

from resilience.stores.base import RateLimitStore, RateLimitTable
from resilience.stores.memory import MemoryStore

__all__ = ["MemoryStore", "RateLimitStore", "RateLimitTable"]
