"""In-process breaker state: a lock, and one state object per epoch.

The lock guards transitions and the window's failure bookkeeping; it is
never held while a protected call runs.  The closed hot path takes no lock
at all: ``acquire`` returns the closed state's preallocated permit and a
plain success is one atomic ``next()`` (see :class:`ClosedState`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from resilience.breaker.config import BreakerConfig
from resilience.breaker.machine import ClosedState, State, new_state
from resilience.breaker.values import BreakerSnapshot, CircuitState, Permit, Transition

__all__ = ["MemoryBreakerStore", "MemoryBreakerTable"]

CLOSED, OPEN = CircuitState.CLOSED, CircuitState.OPEN
FORCED_OPEN = "forced_open"
FORCED_CLOSED = "forced_closed"
RESET = "reset"


class MemoryBreakerTable:
    """One circuit's state in this process."""

    __slots__ = ("_lock", "_lock_free", "_now", "_slow_limit", "closed", "config", "current")

    local = True
    aio = None  # nothing here blocks: async code calls the sync operations

    def __init__(self, config: BreakerConfig, now: Callable[[], float]) -> None:
        self.config = config
        self._now = now
        self._lock = threading.Lock()
        self._slow_limit = config.slow_call_duration
        self.closed: ClosedState | None = None  # the clockless shortcut for the breaker
        self._lock_free: ClosedState | None = None  # counts plain successes without the lock
        self.current: State = self._install(new_state(CLOSED, self, now(), False))

    # -- context for the states (lock held) ------------------------------------------

    def now(self) -> float:
        return self._now()

    def _install(self, state: State) -> State:
        self.current = state
        lock_free = state if isinstance(state, ClosedState) and state.lock_free else None
        self._lock_free = lock_free
        self.closed = lock_free if self._slow_limit is None else None
        return state

    def enter(self, kind: CircuitState, now: float, reason: str, held: bool = False) -> Transition:
        old = self.current.kind
        self._install(new_state(kind, self, now, held))
        return Transition(old, kind, reason)

    def judge(self, state: ClosedState, seq: int) -> Transition | None:
        with self._lock:
            if self.current is not state or state.held:
                return None
            return state.decide(seq, self._now())

    # -- the table protocol ---------------------------------------------------------------

    def state(self, now: float) -> CircuitState:
        return self.current.effective(now)

    def acquire(self, now: float) -> Permit:
        current = self.current
        permit = current.free_permit  # closed
        if permit is not None:
            return permit
        permit = current.try_acquire(now)  # open with the timer running
        if permit is not None:
            return permit
        lock = self._lock
        lock.acquire()  # acquire/try/finally: half the cost of ``with lock``
        try:
            return self.current.acquire(now)
        finally:
            lock.release()

    def record(
        self, permit: Permit, failed: bool, duration: float, now: float
    ) -> Transition | None:
        state = permit.token
        if state is not self.current:
            return None
        limit = self._slow_limit
        slow = limit is not None and duration > limit
        if not (failed or slow):
            closed = self._lock_free
            if state is closed and closed is not None:
                return closed.success()
        lock = self._lock
        lock.acquire()
        try:
            if state is not self.current:
                return None
            return self.current.record(failed, slow, now)
        finally:
            lock.release()

    def release(self, permit: Permit, now: float) -> None:
        if permit.state is CLOSED:
            return
        with self._lock:
            if permit.token is self.current:
                self.current.release()

    def force(self, state: CircuitState, now: float) -> Transition | None:
        if state is CLOSED:
            return self._reenter(CLOSED, now, FORCED_CLOSED, held=True)
        if state is OPEN:
            return self._reenter(OPEN, now, FORCED_OPEN, held=True)
        raise ValueError(f"state must be CircuitState.OPEN or CircuitState.CLOSED, got {state!r}")

    def reset(self, now: float) -> Transition | None:
        return self._reenter(CLOSED, now, RESET, held=False)

    def _reenter(
        self, kind: CircuitState, now: float, reason: str, held: bool
    ) -> Transition | None:
        """Start a fresh epoch of ``kind``; a transition only if the state changes."""
        with self._lock:
            transition = self.enter(kind, now, reason, held)
        return transition if transition.old is not kind else None

    def snapshot(self, now: float) -> BreakerSnapshot:
        with self._lock:
            return self.current.snapshot(now)

    def __repr__(self) -> str:
        return f"MemoryBreakerTable(state={self.current.kind.value!r}, held={self.current.held})"


class MemoryBreakerStore:
    """Breaker tables by name, in this process.

    ``store=None`` gives each breaker a private one; pass one instance to
    several breakers with the same name to make them share one circuit (the
    in-process analogue of a Redis store).  One entry per breaker name, so it
    stays as small as the number of circuits.
    """

    __slots__ = ("_lock", "_tables")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, MemoryBreakerTable] = {}

    def breaker_table(
        self, name: str, config: BreakerConfig, now: Callable[[], float]
    ) -> MemoryBreakerTable:
        with self._lock:
            table = self._tables.get(name)
            if table is None:
                table = self._tables[name] = MemoryBreakerTable(config, now)
            elif table.config != config:
                raise ValueError(
                    f"store already holds a breaker named {name!r} with different options"
                )
            return table

    def __len__(self) -> int:
        return len(self._tables)

    def __repr__(self) -> str:
        return f"MemoryBreakerStore(breakers={sorted(self._tables)!r})"
