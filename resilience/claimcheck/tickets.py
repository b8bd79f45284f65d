"""Signed tickets: ``<key id>.<body>.<mac>``, all three base64url without padding.

The body is compact JSON naming the payload (store id, size, SHA-256
digest), the reference this ticket holds on it, the absolute expiry (wall
time, seconds since the epoch, or ``null``) and the metadata.  The MAC is
HMAC-SHA256 under the key named by the key id, computed over the key id, a
purpose label (``claim`` or ``valet``: a ticket is not a valet token and the
reverse) and the body bytes exactly as sent, so there is nothing to
canonicalise.

Parsing is strict because the input is hostile: the token's length is
bounded, each part must be canonical base64url (a changed padding bit is a
changed ticket), the MAC is compared in constant time *before* the body is
parsed, and every failure is :class:`TicketInvalid`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from resilience.claimcheck.errors import TicketInvalid

__all__ = ["MAX_TOKEN_CHARS", "Keyring", "Ticket", "b64d", "b64e"]

MAX_TOKEN_CHARS: Final = 64 * 1024
"""Longer tokens are rejected before any work (metadata travels in the ticket)."""

_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64 = re.compile(r"[A-Za-z0-9_-]*")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def b64e(raw: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Strict, canonical base64url without padding, or :class:`TicketInvalid`."""
    if not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise TicketInvalid("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TicketInvalid("not base64url") from exc
    if b64e(raw) != text:  # unused low bits set: a second spelling of the same bytes
        raise TicketInvalid("not canonical base64url")
    return raw


@dataclass(frozen=True, slots=True)
class Ticket:
    """The signed claim on one stored payload."""

    blob_id: str
    size: int
    digest: str
    ref: str
    expires_at: float | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        return json.dumps(
            {
                "id": self.blob_id,
                "n": self.size,
                "d": self.digest,
                "r": self.ref,
                "e": self.expires_at,
                "m": self.metadata,
            },
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
            sort_keys=True,
        ).encode("ascii")

    @classmethod
    def from_body(cls, raw: bytes) -> Ticket:
        """Rebuild from a body whose MAC already verified (still checked field by field)."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise TicketInvalid("ticket body is not JSON") from exc
        if not isinstance(data, dict) or set(data) != {"id", "n", "d", "r", "e", "m"}:
            raise TicketInvalid("ticket body has the wrong fields")
        blob_id, size, digest, ref, expires_at, metadata = (
            data["id"], data["n"], data["d"], data["r"], data["e"], data["m"],
        )  # fmt: skip
        if not (isinstance(blob_id, str) and _ID.fullmatch(blob_id)):
            raise TicketInvalid("ticket payload id is malformed")
        if type(size) is not int or size < 0:
            raise TicketInvalid("ticket size is malformed")
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
            raise TicketInvalid("ticket digest is malformed")
        if not (isinstance(ref, str) and _ID.fullmatch(ref)):
            raise TicketInvalid("ticket reference is malformed")
        if expires_at is not None and (
            type(expires_at) not in (int, float) or not math.isfinite(expires_at)
        ):
            raise TicketInvalid("ticket expiry is malformed")
        if not isinstance(metadata, dict):
            raise TicketInvalid("ticket metadata is malformed")
        exp = None if expires_at is None else float(expires_at)
        return cls(blob_id, size, digest, ref, exp, metadata)


class Keyring:
    """HMAC keys by key id: the first signs, every one verifies (rotation)."""

    __slots__ = ("_keys", "signing_kid")

    def __init__(self, secret: bytes | Mapping[str, bytes]) -> None:
        keys = {"k0": secret} if isinstance(secret, bytes | bytearray) else dict(secret)
        if not keys:
            raise ValueError("secret must hold at least one key")
        for kid, key in keys.items():
            if not (isinstance(kid, str) and _KID.fullmatch(kid)):
                raise ValueError(f"secret: key id must match [A-Za-z0-9_-]{{1,64}}, got {kid!r}")
            if not isinstance(key, bytes | bytearray) or len(key) < 16:
                raise ValueError(f"secret: key {kid!r} must be at least 16 bytes")
        self._keys = {kid: bytes(key) for kid, key in keys.items()}
        self.signing_kid = next(iter(self._keys))

    def _mac(self, kid: str, purpose: bytes, body: bytes) -> bytes:
        message = kid.encode("ascii") + b"\x00" + purpose + b"\x00" + body
        return hmac.new(self._keys[kid], message, hashlib.sha256).digest()

    def sign(self, purpose: bytes, body: bytes) -> str:
        kid = self.signing_kid
        return f"{kid}.{b64e(body)}.{b64e(self._mac(kid, purpose, body))}"

    def verify(self, purpose: bytes, token: object) -> bytes:
        """The body of a genuine token, or :class:`TicketInvalid`."""
        if not isinstance(token, str):
            raise TicketInvalid("a ticket is a string")
        if len(token) > MAX_TOKEN_CHARS:
            raise TicketInvalid("ticket too long")
        parts = token.split(".")
        if len(parts) != 3:
            raise TicketInvalid("ticket must have three parts")
        kid, body_part, mac_part = parts
        if kid not in self._keys:  # key ids are not secret: a dict lookup is fine
            raise TicketInvalid("ticket signed with an unknown key id")
        body = b64d(body_part)
        mac = b64d(mac_part)
        if not hmac.compare_digest(mac, self._mac(kid, purpose, body)):
            raise TicketInvalid("ticket signature does not verify")
        return body
