"""Events a claim check emits (see :mod:`resilience.events` for sinks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from resilience.events import Event

__all__ = ["ClaimCheckedIn", "ClaimRedeemed", "TicketRejected"]


@dataclass(frozen=True, slots=True)
class ClaimCheckedIn(Event):
    """A payload was checked in (``inline``: it travels in the envelope)."""

    size: int
    inline: bool
    level: ClassVar[str] = "debug"
    kind: ClassVar[str] = "claim_checked_in"


@dataclass(frozen=True, slots=True)
class ClaimRedeemed(Event):
    """A ticket was redeemed and its payload verified."""

    size: int
    level: ClassVar[str] = "debug"
    kind: ClassVar[str] = "claim_redeemed"


@dataclass(frozen=True, slots=True)
class TicketRejected(Event):
    """A ticket, valet token or payload failed a check: ``reason`` is the error type."""

    reason: str
    detail: str
    level: ClassVar[str] = "warning"
    kind: ClassVar[str] = "ticket_rejected"
