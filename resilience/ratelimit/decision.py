"""The answer a rate limiter gives."""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

__all__ = ["Decision", "ShapedDecision", "StoreFullDecision", "from_values", "make_decision"]

_new = tuple.__new__


class Decision(tuple[bool, int, int, float, float]):
    """One rate-limiting decision: ``(allowed, limit, remaining, retry_after, reset_after)``.

    ``allowed``: whether the request was admitted (and its cost consumed).
    ``limit``: the configured requests per period.
    ``remaining``: unit-cost requests that would be admitted right now.
    ``retry_after``: 0.0 when allowed; otherwise the exact wait after which
    the same request, arriving alone, is admitted (``math.inf`` if its cost
    can never fit).  ``reset_after``: seconds until the key is back to full
    capacity.  ``delay`` (an attribute, not a tuple item, so the five-field
    contract unpacks as written): how long an admitted request must wait
    before it proceeds; non-zero only for shaping algorithms.

    A tuple underneath for speed, but truth-tests as ``allowed``, so
    ``if limiter.try_acquire(key):`` reads as it should.
    """

    __slots__ = ()

    delay: float = 0.0

    def __new__(
        cls,
        allowed: bool,
        limit: int,
        remaining: int,
        retry_after: float,
        reset_after: float,
    ) -> Decision:
        return _new(cls, (allowed, limit, remaining, retry_after, reset_after))

    allowed: bool = property(itemgetter(0))  # type: ignore[assignment]
    limit: int = property(itemgetter(1))  # type: ignore[assignment]
    remaining: int = property(itemgetter(2))  # type: ignore[assignment]
    retry_after: float = property(itemgetter(3))  # type: ignore[assignment]
    reset_after: float = property(itemgetter(4))  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return self[0]

    def _replace(self, **changes: Any) -> Decision:
        """A copy with some fields changed (like ``namedtuple._replace``)."""
        fields = dict(zip(_FIELDS, self, strict=True))
        delay = changes.pop("delay", self.delay)
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise ValueError(f"Decision has no field(s) {sorted(unknown)}")
        fields.update(changes)
        return from_values((*fields.values(), delay))

    def _asdict(self) -> dict[str, Any]:
        out = dict(zip(_FIELDS, self, strict=True))
        out["delay"] = self.delay
        return out

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in zip(_FIELDS, self, strict=True))
        if self.delay:
            body += f", delay={self.delay!r}"
        return f"Decision({body})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (make_decision, (*self, self.delay))


_FIELDS = ("allowed", "limit", "remaining", "retry_after", "reset_after")


class ShapedDecision(Decision):
    """An admitted request that must wait ``delay`` seconds (a shaping algorithm)."""

    # No __slots__: the instance dict holds ``delay``.

    def __eq__(self, other: object) -> bool:
        return tuple.__eq__(self, other) is True and self.delay == getattr(other, "delay", 0.0)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return tuple.__hash__(self) if not self.delay else hash((tuple(self), self.delay))


class StoreFullDecision(Decision):
    """A refusal because the limiter's bounded store has no room for a new key.

    Server capacity, not the key's own quota: the web middlewares answer it
    with 503 and their own problem type instead of an ordinary 429, so that
    a client (and an operator) can tell "you sent too much" from "the server
    is tracking too many clients".  ``retry_after``: when a stored key can
    first be reclaimed.
    """

    __slots__ = ()


def make_decision(
    allowed: bool,
    limit: int,
    remaining: int,
    retry_after: float,
    reset_after: float,
    delay: float = 0.0,
) -> Decision:
    """Build a decision, shaped when ``delay`` is non-zero."""
    if not delay:
        return _new(Decision, (allowed, limit, remaining, retry_after, reset_after))
    shaped = _new(ShapedDecision, (allowed, limit, remaining, retry_after, reset_after))
    shaped.delay = delay
    return shaped


def from_values(values: Iterable[Any]) -> Decision:
    """A decision from six values ``(allowed, ..., reset_after, delay)``."""
    return make_decision(*values)
