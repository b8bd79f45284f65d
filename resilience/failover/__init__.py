"""The failover client's pure decisions: which requests may be replayed, when traffic switches.

Nothing here does I/O or imports an HTTP client: ``resilience.aiohttp``'s
``FailoverClient`` drives these functions, and the property tests drive them
with :class:`resilience.testing.FakeClock`.
"""

from resilience.failover.credentials import (
    CREDENTIAL_HEADERS,
    carries_credentials,
    strip_credentials,
)
from resilience.failover.eligibility import (
    IDEMPOTENCY_KEY,
    has_idempotency_key,
    is_replayable_body,
    may_replay,
)
from resilience.failover.origins import Origin, parse_origin
from resilience.failover.switch import (
    PRIMARY,
    SECONDARY,
    Hysteresis,
    OriginHealth,
    SwitchState,
    Transition,
    observe,
)

__all__ = [
    "CREDENTIAL_HEADERS",
    "IDEMPOTENCY_KEY",
    "PRIMARY",
    "SECONDARY",
    "Hysteresis",
    "Origin",
    "OriginHealth",
    "SwitchState",
    "Transition",
    "carries_credentials",
    "has_idempotency_key",
    "is_replayable_body",
    "may_replay",
    "observe",
    "parse_origin",
    "strip_credentials",
]
