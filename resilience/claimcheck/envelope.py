"""The message that travels instead of (or with) the payload.

``bytes(env)`` is compact JSON: ``{"v":1,"i":"<base64url payload>","m":{...}}``
for an inline payload, ``{"v":1,"t":"<ticket>","m":{...}}`` for a stored one.
JSON only: nothing here ever unpickles or evaluates what it reads, and
:meth:`Envelope.from_bytes` raises :class:`TicketInvalid` for anything that
is not an envelope.  For a ticket envelope the metadata is also signed in the
ticket, and ``redeem`` rejects an envelope whose metadata was changed.
"""

from __future__ import annotations

import json
from typing import Any

from resilience.claimcheck.errors import TicketInvalid
from resilience.claimcheck.tickets import b64d, b64e

__all__ = ["Envelope"]


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Envelope:
    """Either ``inline`` bytes or a signed ``ticket``, plus JSON ``metadata``."""

    __slots__ = ("inline", "metadata", "ticket")

    def __init__(
        self,
        *,
        inline: bytes | None = None,
        ticket: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if (inline is None) == (ticket is None):
            raise ValueError("an Envelope holds exactly one of inline or ticket")
        self.inline = None if inline is None else bytes(inline)
        self.ticket = ticket
        self.metadata: dict[str, Any] = {} if metadata is None else metadata

    def __bytes__(self) -> bytes:
        doc: dict[str, Any] = {"v": 1}
        if self.inline is not None:
            doc["i"] = b64e(self.inline)
        else:
            doc["t"] = self.ticket
        doc["m"] = self.metadata
        return _dumps(doc).encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview | str) -> Envelope:
        """Parse ``bytes(env)``; anything else is :class:`TicketInvalid`."""
        try:
            text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
            doc = json.loads(text)
        except (ValueError, TypeError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise TicketInvalid("envelope is not UTF-8 JSON") from exc
        if not isinstance(doc, dict) or doc.get("v") != 1 or type(doc.get("v")) is not int:
            raise TicketInvalid("not a version 1 envelope")
        metadata = doc.get("m", {})
        if not isinstance(metadata, dict):
            raise TicketInvalid("envelope metadata must be an object")
        keys = set(doc)
        if keys == {"v", "i", "m"} and isinstance(doc["i"], str):
            return cls(inline=b64d(doc["i"]), metadata=metadata)
        if keys == {"v", "t", "m"} and isinstance(doc["t"], str):
            return cls(ticket=doc["t"], metadata=metadata)
        raise TicketInvalid("envelope must hold one of 'i' (inline) or 't' (ticket) and 'm'")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return (self.inline, self.ticket, self.metadata) == (
            other.inline,
            other.ticket,
            other.metadata,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.inline is not None:
            return f"Envelope(inline=<{len(self.inline)} bytes>, metadata={self.metadata!r})"
        return f"Envelope(ticket={self.ticket!r}, metadata={self.metadata!r})"
