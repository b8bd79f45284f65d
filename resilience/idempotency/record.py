"""The idempotency record's state machine, as pure functions.

A key is in one of three states:

* **absent** (no record, or a record whose lease or retention ran out);
* **running**: an owner holds a lease until ``expires``; the record carries
  the request's ``fingerprint`` and the owner's fencing ``token``;
* **done**: the owner's encoded ``result`` is kept until ``expires``.

Every store (memory, SQLite, the Redis Lua scripts) applies exactly these
transitions, one atomic step each, so the stores agree call for call (a
differential test proves it).  Time is whatever ``now`` the store uses (the
caller's clock, the wall clock or Redis ``TIME``); nothing here reads a clock.

Every transition may be sent twice with the same arguments (a remote store
resends after a lost reply): a second ``begin`` with the holder's own token
is acquired again, a second ``complete`` / ``release`` / ``renew`` finds the
work done and answers False, and nothing changes twice.

The token is unique per lease (:func:`new_token`), not a per-key counter: a record
that expired and was forgotten cannot hand a later owner the token an earlier
one still holds, so a late completion is always refused.
"""

from __future__ import annotations

import itertools
import os
import secrets
from enum import StrEnum
from typing import Final, NamedTuple

__all__ = [
    "ACQUIRED",
    "IN_PROGRESS",
    "REPLAY",
    "REUSED",
    "UNPROTECTED",
    "Claim",
    "ClaimStatus",
    "Record",
    "begin",
    "complete",
    "live",
    "new_token",
    "release",
    "renew",
]


class ClaimStatus(StrEnum):
    """What taking a lease found."""

    ACQUIRED = "acquired"  # the caller owns the key now and must run
    REPLAY = "replay"  # a stored result with the same fingerprint
    REUSED = "reused"  # a live record with another fingerprint
    IN_PROGRESS = "in_progress"  # another owner's live lease, same fingerprint
    UNPROTECTED = "unprotected"  # the store is down and its policy is fail-open: run unguarded


ACQUIRED: Final = ClaimStatus.ACQUIRED
REPLAY: Final = ClaimStatus.REPLAY
REUSED: Final = ClaimStatus.REUSED
IN_PROGRESS: Final = ClaimStatus.IN_PROGRESS
UNPROTECTED: Final = ClaimStatus.UNPROTECTED


class Record(NamedTuple):
    """One key's stored state.  ``expires``: the lease's end (running) or the retention's (done).

    A named tuple rather than a frozen dataclass: one is built per transition,
    and a frozen dataclass's ``__init__`` costs three times as much.
    """

    done: bool
    fingerprint: str
    token: str
    expires: float
    result: bytes | None = None


class Claim(NamedTuple):
    """The answer to :func:`begin`: ``result`` for a replay, ``retry_after`` while in progress."""

    status: ClaimStatus
    result: bytes | None = None
    retry_after: float = 0.0


CLAIM_ACQUIRED: Final = Claim(ACQUIRED)
CLAIM_REUSED: Final = Claim(REUSED)
CLAIM_UNPROTECTED: Final = Claim(UNPROTECTED)


_prefix = secrets.token_hex(8)
_serial = itertools.count()


def _reseed() -> None:
    global _prefix, _serial
    _prefix = secrets.token_hex(8)
    _serial = itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)  # a child must never repeat its parent's tokens


def new_token() -> str:
    """A fresh fencing token, unique across processes and restarts.

    64 random bits drawn once per process, then a counter: as unique as a
    random token per lease (a second process draws another prefix) at a
    fraction of the cost of reading ``os.urandom`` each time.
    """
    return f"{_prefix}{next(_serial):x}"


def live(record: Record | None, now: float) -> Record | None:
    """``record`` unless it is missing or expired (an expired record counts as absent)."""
    if record is None or now >= record.expires:
        return None
    return record


def begin(
    record: Record | None, now: float, fingerprint: str, token: str, lease: float
) -> tuple[Claim, Record | None]:
    """Take the lease on an absent key, or say why not.  Returns the claim and the new record
    (``None``: leave the stored record as it is)."""
    current = live(record, now)
    if current is None:
        return CLAIM_ACQUIRED, Record(False, fingerprint, token, now + lease)
    if current.fingerprint != fingerprint:
        return CLAIM_REUSED, None
    if current.done:
        return Claim(REPLAY, current.result), None
    if current.token == token:  # a resend of this very call (its reply was lost): still ours
        return CLAIM_ACQUIRED, Record(False, fingerprint, token, now + lease)
    return Claim(IN_PROGRESS, None, current.expires - now), None


def _owned(record: Record | None, now: float, token: str) -> Record | None:
    current = live(record, now)
    if current is None or current.done or current.token != token:
        return None
    return current


def renew(record: Record | None, now: float, token: str, lease: float) -> Record | None:
    """The record with its lease extended to ``now + lease``, or ``None`` if ``token`` lost it."""
    current = _owned(record, now, token)
    if current is None:
        return None
    return Record(False, current.fingerprint, token, now + lease)


def complete(
    record: Record | None, now: float, token: str, result: bytes, ttl: float
) -> Record | None:
    """The completed record kept until ``now + ttl``, or ``None``: the fencing token refuses
    a completion by an owner whose lease expired or was taken over."""
    current = _owned(record, now, token)
    if current is None:
        return None
    return Record(True, current.fingerprint, token, now + ttl, result)


def release(record: Record | None, now: float, token: str) -> bool:
    """True when ``token`` still owns the lease, which is then dropped (the key is absent again)."""
    return _owned(record, now, token) is not None
