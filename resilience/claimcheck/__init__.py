"""Claim check and valet key: large payloads out of the message path.

``ClaimCheck(store, secret)`` stores a payload of at least ``threshold``
bytes under its SHA-256 digest and returns an :class:`Envelope` with a small
HMAC-signed ticket; smaller payloads travel inline.  ``grant`` issues a
valet key: a signed, expiring, read-only token that ``resilience.asgi.ValetKeyApp``
or ``resilience.aiohttp.valet_key_handler`` exchange for the bytes.
See ``docs/claim-check.md``.
"""

from resilience.claimcheck.claimcheck import ClaimCheck, ClaimReader, ValetGrant
from resilience.claimcheck.envelope import Envelope
from resilience.claimcheck.errors import (
    PayloadCorrupt,
    PayloadMissing,
    TicketExpired,
    TicketInvalid,
)
from resilience.claimcheck.events import ClaimCheckedIn, ClaimRedeemed, TicketRejected
from resilience.claimcheck.file import FileBlobStore
from resilience.claimcheck.memory import MemoryBlobStore
from resilience.claimcheck.store import BlobReader, BlobStore, BlobWriter
from resilience.claimcheck.tickets import Ticket

__all__ = [
    "BlobReader",
    "BlobStore",
    "BlobWriter",
    "ClaimCheck",
    "ClaimCheckedIn",
    "ClaimReader",
    "ClaimRedeemed",
    "Envelope",
    "FileBlobStore",
    "MemoryBlobStore",
    "PayloadCorrupt",
    "PayloadMissing",
    "Ticket",
    "TicketExpired",
    "TicketInvalid",
    "TicketRejected",
    "ValetGrant",
]
