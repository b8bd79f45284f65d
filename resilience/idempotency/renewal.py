"""Keeping a live owner's lease: renew it every ``lease / 3`` seconds while the call runs.

Sync calls share one daemon thread per process (starting a thread per call
would cost more than the rest of a call); async calls share one timer per
event loop, armed only while leases are held there (a timer per call cost
more than the rest of an idempotent request), which spawns a renewal task
for each lease that is due.  Either way the owner stops
renewal in ``finally`` before it completes or releases the key.  The
cadence is real time: it schedules work, it decides nothing (the store
checks the lease against its own clock and the owner's fencing token).
A renewal that finds the lease lost marks the handle ``lost`` and stops:
the owner's completion will be refused by its token.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any

from resilience.clock import Clock
from resilience.errors import StoreError
from resilience.idempotency.store import IdempotencyStore

__all__ = ["Lease", "LeaseKeeper", "KEEPER"]


class Lease:
    """One held lease being renewed; ``lost`` once a renewal was refused."""

    __slots__ = ("_timer", "clock", "due", "failures", "key", "lease", "lost", "store", "token")

    def __init__(
        self, store: IdempotencyStore, key: str, token: str, lease: float, clock: Clock
    ) -> None:
        self.store = store
        self.key = key
        self.token = token
        self.lease = lease
        self.clock = clock
        self.due = time.monotonic() + lease / 3.0
        self.lost = False
        self.failures = 0
        self._timer: Any = None


class LeaseKeeper:
    """Renews registered leases: one shared thread for sync owners, loop timers for async ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._leases: dict[int, Lease] = {}
        self._thread: threading.Thread | None = None
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopLeases] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, _LoopLeases] | None = None

    # -- sync owners: the shared thread ----------------------------------------------------

    def hold(
        self, store: IdempotencyStore, key: str, token: str, lease: float, clock: Clock
    ) -> Lease:
        handle = Lease(store, key, token, lease, clock)
        with self._cond:
            self._leases[id(handle)] = handle
            thread = self._thread
            if thread is None or not thread.is_alive():
                thread = self._thread = threading.Thread(
                    target=self._run, name="resilience-idempotency-leases", daemon=True
                )
                thread.start()
            self._cond.notify()
        return handle

    def drop(self, handle: Lease) -> None:
        with self._cond:
            self._leases.pop(id(handle), None)

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._leases:
                    cond.wait()
                now = time.monotonic()
                soonest = min(h.due for h in self._leases.values())
                if soonest > now:
                    cond.wait(soonest - now)
                    continue
                due = [h for h in self._leases.values() if h.due <= now]
                for handle in due:
                    handle.due = now + handle.lease / 3.0
            for handle in due:  # no lock held across store calls
                self._renew_sync(handle)

    def _renew_sync(self, handle: Lease) -> None:
        try:
            kept = handle.store.renew(
                handle.key, handle.token, handle.lease, handle.clock.monotonic()
            )
        except StoreError:
            handle.failures += 1  # try again next round; the lease may still hold
            return
        except Exception:
            handle.failures += 1
            return
        if not kept:
            handle.lost = True
            self.drop(handle)

    # -- async owners: one timer per event loop ----------------------------------------------

    async def ahold(
        self, store: IdempotencyStore, key: str, token: str, lease: float, clock: Clock
    ) -> Lease:
        handle = Lease(store, key, token, lease, clock)
        loop = asyncio.get_running_loop()
        state = self._loop_state(loop)
        handle._timer = state
        state.leases[id(handle)] = handle
        if state.timer is None or handle.due < state.wake:
            state.arm(loop, handle.due, self)
        return handle

    def _loop_state(self, loop: asyncio.AbstractEventLoop) -> _LoopLeases:
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopLeases()
        self._last = (loop, state)
        return state

    def _tick(self, state: _LoopLeases, loop: asyncio.AbstractEventLoop) -> None:
        state.timer = None
        now = time.monotonic()
        for handle in list(state.leases.values()):
            if handle.due <= now:
                handle.due = now + handle.lease / 3.0
                task = loop.create_task(self._arenew(handle, state))
                state.tasks.add(task)
                task.add_done_callback(state.tasks.discard)
        if state.leases:
            state.arm(loop, min(h.due for h in state.leases.values()), self)

    async def _arenew(self, handle: Lease, state: _LoopLeases) -> None:
        store = handle.store
        now = handle.clock.monotonic()
        try:
            if store.local:
                kept = store.renew(handle.key, handle.token, handle.lease, now)
            else:
                kept = await store.arenew(handle.key, handle.token, handle.lease, now)
        except Exception:
            handle.failures += 1  # the lease may still hold: try again next round
            return
        if not kept:
            handle.lost = True
            state.leases.pop(id(handle), None)

    async def adrop(self, handle: Lease) -> None:
        state = handle._timer
        if state is not None:
            state.leases.pop(id(handle), None)
            handle._timer = None


class _LoopLeases:
    """The async leases held on one event loop, and the one timer that renews them."""

    __slots__ = ("__weakref__", "leases", "tasks", "timer", "wake")

    def __init__(self) -> None:
        self.leases: dict[int, Lease] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.wake = 0.0

    def arm(self, loop: asyncio.AbstractEventLoop, due: float, keeper: LeaseKeeper) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.wake = due
        self.timer = loop.call_later(max(0.0, due - time.monotonic()), keeper._tick, self, loop)


KEEPER = LeaseKeeper()
"""The process-wide keeper every ``@idempotent`` and middleware uses."""
