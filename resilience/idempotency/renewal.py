"""Keeping a live owner's lease: renew it every ``lease / 3`` seconds while the call runs.

Sync calls share one daemon thread per process (starting a thread per call
would cost more than the rest of a call); async calls get a timer on their
event loop that spawns one renewal at a time.  Either way the owner stops
renewal in ``finally`` before it completes or releases the key.  The
cadence is real time: it schedules work, it decides nothing (the store
checks the lease against its own clock and the owner's fencing token).
A renewal that finds the lease lost marks the handle ``lost`` and stops:
the owner's completion will be refused by its token.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
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

    # -- async owners: a timer on the running loop ------------------------------------------

    async def ahold(
        self, store: IdempotencyStore, key: str, token: str, lease: float, clock: Clock
    ) -> Lease:
        handle = Lease(store, key, token, lease, clock)
        self._schedule(handle, asyncio.get_running_loop())
        return handle

    def _schedule(self, handle: Lease, loop: asyncio.AbstractEventLoop) -> None:
        handle._timer = loop.call_later(handle.lease / 3.0, self._fire, handle, loop)

    def _fire(self, handle: Lease, loop: asyncio.AbstractEventLoop) -> None:
        handle._timer = loop.create_task(self._arenew(handle, loop))

    async def _arenew(self, handle: Lease, loop: asyncio.AbstractEventLoop) -> None:
        store = handle.store
        now = handle.clock.monotonic()
        try:
            if store.local:
                kept = store.renew(handle.key, handle.token, handle.lease, now)
            else:
                kept = await store.arenew(handle.key, handle.token, handle.lease, now)
        except asyncio.CancelledError:
            return
        except Exception:
            handle.failures += 1
            kept = True  # the lease may still hold: try again next round
        if not kept:
            handle.lost = True
            return
        if handle._timer is not None:  # not stopped meanwhile
            self._schedule(handle, loop)

    async def adrop(self, handle: Lease) -> None:
        timer, handle._timer = handle._timer, None
        if timer is not None:
            with contextlib.suppress(Exception):
                timer.cancel()


KEEPER = LeaseKeeper()
"""The process-wide keeper every ``@idempotent`` and middleware uses."""
