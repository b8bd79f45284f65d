"""Deprecated: the rate-limit stores moved to :mod:`resilience.ratelimit`.

``from resilience import MemoryStore`` (or ``resilience.ratelimit``) is the
public way in; ``resilience.stores``, ``resilience.stores.memory`` and
``resilience.stores.base`` still import, with a :class:`DeprecationWarning`.
"""

import sys
import warnings

from resilience.ratelimit import memory_store as _memory
from resilience.ratelimit import store as _base
from resilience.ratelimit.memory_store import MemoryStore
from resilience.ratelimit.store import RateLimitStore, RateLimitTable

warnings.warn(
    "resilience.stores is deprecated: import MemoryStore from resilience, and "
    "RateLimitStore/RateLimitTable from resilience.ratelimit.store",
    DeprecationWarning,
    stacklevel=2,
)

# The old submodules, so `from resilience.stores.memory import MemoryStore` keeps working.
sys.modules[f"{__name__}.memory"] = _memory
sys.modules[f"{__name__}.base"] = _base

__all__ = ["MemoryStore", "RateLimitStore", "RateLimitTable"]
