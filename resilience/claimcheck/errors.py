"""What a claim check raises on purpose.

Every error derives from :class:`resilience.ResilienceError`.  A ticket or
envelope that cannot be trusted (forged, altered, truncated, malformed,
signed by an unknown key) is :class:`TicketInvalid`, which is also a
``ValueError``: parsing hostile input raises nothing else.
"""

from __future__ import annotations

from resilience.errors import ResilienceError

__all__ = ["PayloadCorrupt", "PayloadMissing", "TicketExpired", "TicketInvalid"]


class TicketInvalid(ResilienceError, ValueError):
    """The ticket, token or envelope is not one we signed, or not intact."""


class TicketExpired(ResilienceError):
    """A genuine ticket (or valet token) whose expiry has passed."""

    def __init__(self, message: str, expires_at: float) -> None:
        super().__init__(message)
        self.expires_at = expires_at


class PayloadMissing(ResilienceError, LookupError):
    """The ticket is genuine but the store no longer holds its payload."""


class PayloadCorrupt(ResilienceError):
    """The stored bytes do not have the size or SHA-256 digest the ticket signed."""
