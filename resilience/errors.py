"""The exception hierarchy.

Everything a policy raises on purpose derives from :class:`ResilienceError`,
so callers can catch one type at the edge.  Configuration mistakes are plain
``ValueError`` raised at construction, naming the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilience.ratelimit.decision import Decision

__all__ = [
    "BulkheadFull",
    "CircuitOpen",
    "IdempotencyInProgress",
    "IdempotencyKeyReused",
    "InvalidKey",
    "RateLimited",
    "ResilienceError",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
]


class ResilienceError(Exception):
    """Base class of every error a resilience policy raises on purpose."""


class RateLimited(ResilienceError):
    """A rate limiter refused the call: ``RateLimited(decision, policy)`` (positional).

    ``retry_after`` is the wait after which the same request would be admitted
    if nothing else arrives (``math.inf`` when it can never fit).

    Built by C code alone (``BaseException.__init__`` keeps the arguments in
    ``args``; the fields are read from there and the message is formatted
    only when read): a rejection's cost is mostly the exception, and a Python
    ``__init__`` doubled it.  Positional arguments only.
    """

    if TYPE_CHECKING:

        def __init__(self, decision: Decision, policy: str | None = None, /) -> None: ...

    else:
        __init__ = BaseException.__init__

    @property
    def decision(self) -> Decision:
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def policy(self) -> str | None:
        return self.args[1] if len(self.args) > 1 else None

    @property
    def retry_after(self) -> float:
        try:
            return float(self.args[0][3])
        except (IndexError, TypeError, ValueError):
            return 0.0  # raised by hand without a Decision

    def __str__(self) -> str:
        try:
            retry_after = float(self.args[0][3])
        except (IndexError, TypeError, ValueError):
            return super().__str__()
        name = f" by {self.policy!r}" if self.policy else ""
        return f"rate limited{name}; retry after {retry_after:.3f}s"


class CircuitOpen(ResilienceError):
    """A circuit breaker is open (or its half-open probes are taken).

    The message is formatted on demand: building it in ``__init__`` cost more
    than the rest of a rejection.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (type(self), (self.name, self.retry_after))

    def __str__(self) -> str:
        return f"circuit {self.name!r} is open; retry after {self.retry_after:.3f}s"


class BulkheadFull(ResilienceError):
    """A bulkhead had no free slot and no room (or time) left in its queue."""

    def __init__(self, name: str, retry_after: float = 0.0) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(name, retry_after)

    def __str__(self) -> str:
        return f"bulkhead {self.name!r} is full"


class PrebuiltRefusal:
    """Mixin for the refusals policies raise on their hot path (open circuit, full bulkhead).

    Put first in the bases (``class _Open(PrebuiltRefusal, CircuitOpen)``): the
    error is then built by C code alone (``BaseException.__init__``), its
    ``name`` and ``retry_after`` kept in ``args`` and its message formatted
    only when read, by the public class's ``__str__``.  The public class's
    Python ``__init__`` cost more than the raise itself.  Pickles like the
    public class (``args`` are its constructor's arguments).
    """

    __init__ = BaseException.__init__
    args: tuple[object, ...]
    _public: type[BaseException]

    def __init_subclass__(cls) -> None:
        # Shown (and pickled) as the public class: tracebacks and logs say
        # ``resilience.errors.CircuitOpen``, and an unpickled one is a plain CircuitOpen.
        super().__init_subclass__()
        public = next(base for base in cls.__mro__[1:] if issubclass(base, BaseException))
        cls._public = public
        cls.__name__, cls.__qualname__ = public.__name__, public.__qualname__
        cls.__module__ = public.__module__

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self._public, self.args)

    @property
    def name(self) -> str:
        return str(self.args[0])

    @name.setter
    def name(self, value: str) -> None:
        self.args = (value, *self.args[1:])

    @property
    def retry_after(self) -> float:
        return float(self.args[1])  # type: ignore[arg-type]

    @retry_after.setter
    def retry_after(self, value: float) -> None:
        self.args = (self.args[0], value)


class StoreError(ResilienceError):
    """A state store could not answer."""


class StoreUnavailable(StoreError):
    """The store is unreachable (outage, timeout); see ``on_store_error``."""


class StoreFull(StoreError):
    """The bounded in-memory store has no room for a new key.

    Raised only when every stored key still carries state that matters (it is
    not back to full capacity): dropping such a key would forgive a client that
    is over its limit, so the store refuses the new key instead.
    ``retry_after`` is how long until the first stored key can be reclaimed.
    """

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidKey(ResilienceError, ValueError):
    """A key is not a string or is longer than the store accepts."""


class IdempotencyInProgress(ResilienceError):
    """The first call with this idempotency key is still running (after waiting ``wait``).

    ``retry_after``: seconds until its lease runs out if its owner stops renewing it.
    """

    def __init__(self, key: str, retry_after: float) -> None:
        super().__init__(f"idempotency key {key!r} is in progress; retry after {retry_after:.3f}s")
        self.key = key
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[IdempotencyInProgress], tuple[str, float]]:
        return (type(self), (self.key, self.retry_after))


class IdempotencyKeyReused(ResilienceError):
    """The idempotency key was used before with other arguments (another fingerprint)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used with other arguments")
        self.key = key

    def __reduce__(self) -> tuple[type[IdempotencyKeyReused], tuple[str]]:
        return (type(self), (self.key,))
