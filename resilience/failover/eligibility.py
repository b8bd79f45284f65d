"""Which requests may be sent a second time (CloudFront origin-group semantics).

A request is replayed on the other origin only when sending it twice cannot
do harm: its method is in the safe list (GET, HEAD, OPTIONS by default), or it
carries an ``Idempotency-Key`` (the server's idempotency middleware then runs
it at most once); and its body can be sent again.  A stream, a file object or
an async iterator is read while it is sent, so a second attempt would send
nothing or the wrong bytes: such a request never fails over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["IDEMPOTENCY_KEY", "has_idempotency_key", "is_replayable_body", "may_replay"]

IDEMPOTENCY_KEY = "idempotency-key"


def has_idempotency_key(headers: object) -> bool:
    """Whether ``headers`` (a mapping or pairs) carry a non-empty ``Idempotency-Key``."""
    if headers is None:
        return False
    pairs: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers  # type: ignore[assignment]
    for name, value in pairs:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(name, str) and name.strip().lower() == IDEMPOTENCY_KEY:
            return bool(str(value).strip())
    return False


def is_replayable_body(data: object) -> bool:
    """Whether a request body can be sent twice with the same bytes.

    ``None``, ``bytes``, ``str`` and plain form fields (a mapping, or a list
    or tuple of pairs) are values; anything else (a file object, a stream,
    an iterator, aiohttp's ``FormData`` or ``Payload``, which are consumed
    when sent) is not.
    """
    if data is None or isinstance(data, bytes | bytearray | str):
        return True
    if isinstance(data, Mapping):
        return all(_plain(v) for v in data.values())
    if isinstance(data, list | tuple):
        return all(isinstance(item, tuple) and len(item) == 2 and _plain(item[1]) for item in data)
    return False


def _plain(value: object) -> bool:
    return value is None or isinstance(value, str | bytes | int | float)


def may_replay(method: str, methods: frozenset[str], has_key: bool, replayable_body: bool) -> bool:
    """A second attempt on the other origin is allowed for this request."""
    return replayable_body and (method in methods or has_key)
