"""The seam between a breaker and where its state lives.

A breaker asks its store once, at construction, for a *table*: the state of
one named circuit.  Every transition goes through the table, so a shared
store (Redis) can implement each method as one atomic script, keyed by the
breaker's name.  Rules a table must keep, whatever holds the state:

* ``acquire`` is the only way in; it may move open -> half-open (and says so
  in ``Permit.transition``) and must admit at most ``half_open_max_calls``
  probes per half-open round.
* ``record`` and ``release`` ignore a permit whose ``token`` is not the
  current state's: late outcomes never move the circuit or its timer.
* Creating a table never resets existing state, and no state means closed.

The breaker runs the protected call between ``acquire`` and ``record`` with
no lock held.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Protocol, cast, runtime_checkable

from resilience.breaker.config import BreakerConfig
from resilience.breaker.values import BreakerSnapshot, CircuitState, Permit, Transition

__all__ = ["AsyncBreakerOps", "BreakerStore", "BreakerTable", "ClosedRecorder", "async_ops"]


class ClosedRecorder(Protocol):
    """An in-process shortcut for the closed hot path (see ``BreakerTable.closed``).

    ``success()`` counts one plain success.  The breaker's hot path inlines it
    (one Python call level is about a fifth of the closed path's cost), so its
    parts are part of the contract: ``seq = success_seq()``, store ``mark = seq``,
    and only when ``seq == crossing`` ask ``judge(seq)`` for a transition.
    """

    @property
    def permit(self) -> Permit: ...

    mark: int
    """The sequence number of the latest plain success."""

    @property
    def crossing(self) -> int:
        """The one success sequence number that may move the circuit (0: none)."""
        ...

    @property
    def success_seq(self) -> Callable[[], int]:
        """A lock-free counter: the next success's sequence number."""
        ...

    def judge(self, seq: int) -> Transition | None:
        """Whether the success numbered ``seq`` (== ``crossing``) moves the circuit."""
        ...

    def success(self) -> Transition | None:
        """Count one plain (not failed, not slow, untimed) success, lock-free."""
        ...


class AsyncBreakerOps(Protocol):
    """The async form of a remote table's operations, one per sync one, same names.

    A breaker's step generators yield ``Io(table.acquire, table.aio.acquire, now)``:
    the sync driver calls the first, the async driver awaits the second.
    """

    async def state(self, now: float) -> CircuitState: ...

    async def acquire(self, now: float) -> Permit: ...

    async def record(
        self, permit: Permit, failed: bool, duration: float, now: float
    ) -> Transition | None: ...

    async def release(self, permit: Permit, now: float) -> None: ...

    async def force(self, state: CircuitState, now: float) -> Transition | None: ...

    async def reset(self, now: float) -> Transition | None: ...

    async def snapshot(self, now: float) -> BreakerSnapshot: ...


@runtime_checkable
class BreakerTable(Protocol):
    """One circuit's state.  ``now`` arguments come from the breaker's clock;
    a remote table may use its server's clock instead.

    Seven sync operations, plus ``aio``: their async forms for a table whose
    sync operations block (a network store), or ``None`` for a local table,
    whose sync operations async code may call directly.
    """

    @property
    def local(self) -> bool:
        """True when the sync methods never block (in-process), so async callers may use them."""
        ...

    @property
    def aio(self) -> AsyncBreakerOps | None:
        """The async operations, or ``None`` when the sync ones never block."""
        ...

    @property
    def closed(self) -> ClosedRecorder | None:
        """While closed, and when a plain success needs no clock, a lock-free recorder.

        The breaker then skips ``acquire``/``record`` for successful calls and
        may report from async code synchronously, so only ``local`` tables may
        offer one.  Remote tables return ``None`` and every call goes through
        ``acquire``.
        """
        ...

    def state(self, now: float) -> CircuitState:
        """The state a call would meet at ``now`` (half-open once the open timer ran out)."""
        ...

    def acquire(self, now: float) -> Permit:
        """May a call run?  Half-open: takes a probe slot."""
        ...

    def record(
        self, permit: Permit, failed: bool, duration: float, now: float
    ) -> Transition | None:
        """The permitted call finished; ``duration`` is 0.0 when it was not timed."""
        ...

    def release(self, permit: Permit, now: float) -> None:
        """The call's outcome does not count (ignored exception, interrupt): free its slot."""
        ...

    def force(self, state: CircuitState, now: float) -> Transition | None:
        """Hold the circuit open or closed until ``reset``."""
        ...

    def reset(self, now: float) -> Transition | None:
        """Closed, not held, with an empty window."""
        ...

    def snapshot(self, now: float) -> BreakerSnapshot: ...


class LegacyAsyncOps:
    """``aio`` for a table written to the old protocol (``aacquire``, ``arecord``, ...).

    Deprecated: give the table an ``aio`` attribute instead.  Only binds the
    old methods under the new names; nothing is forwarded by hand.
    """

    __slots__ = ("acquire", "force", "record", "release", "reset", "snapshot", "state")

    def __init__(self, table: object) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(table, "a" + name))


def async_ops(table: BreakerTable) -> AsyncBreakerOps | None:
    """The table's async operations: ``aio``, or the old ``a*`` methods (with a warning)."""
    aio = getattr(table, "aio", _MISSING)
    if aio is not _MISSING:
        return cast("AsyncBreakerOps | None", aio)
    if table.local:
        return None
    if callable(getattr(table, "aacquire", None)):
        warnings.warn(
            f"{type(table).__name__}: breaker tables now expose their async operations as "
            "`aio` (see resilience.breaker.AsyncBreakerOps); aacquire/arecord/... are deprecated",
            DeprecationWarning,
            stacklevel=3,
        )
        return cast(AsyncBreakerOps, LegacyAsyncOps(table))
    return None


_MISSING = object()


@runtime_checkable
class BreakerStore(Protocol):
    """Something that can hold circuit-breaker state (memory, Redis, ...)."""

    def breaker_table(
        self, name: str, config: BreakerConfig, now: Callable[[], float]
    ) -> BreakerTable:
        """The table for circuit ``name``; breakers with the same name share it."""
        ...
