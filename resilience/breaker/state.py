"""Deprecated module path: the breaker's value types now live in :mod:`resilience.breaker.values`.

Import them from :mod:`resilience.breaker` (``CircuitState``, ``Permit``,
``Transition``, ``BreakerSnapshot``); this alias goes away in 1.0.
"""

from __future__ import annotations

import warnings
from typing import Any

from resilience.breaker import values as _values

_DEPRECATED = ("BreakerSnapshot", "CircuitState", "Permit", "Transition")


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        warnings.warn(
            "resilience.breaker.state is deprecated: import from resilience.breaker",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_values, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
