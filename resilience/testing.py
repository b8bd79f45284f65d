"""Test helpers shipped to users: a fake clock, arrival strategies, invariant checks.

``FakeClock`` drives any policy deterministically.  With ``auto_advance=True``
(the default) ``sleep``/``asleep`` move time forward at once, so a test of a
waiting limiter takes no real time.  With ``auto_advance=False`` sleepers
block until the test calls ``advance``, which is what you want to observe
concurrent waiters, cancellation and timeouts.

The hypothesis strategies (``arrivals``, ``bursty_arrivals`` ...) generate
arrival schedules for users' own property tests of their limits.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from resilience import _validate

if TYPE_CHECKING:
    from resilience.ratelimit.algorithms.base import Algorithm
    from resilience.ratelimit.decision import Decision

__all__ = [
    "FakeClock",
    "arrivals",
    "bursty_arrivals",
    "costs",
    "max_admitted_in_window",
    "periodic_arrivals",
    "random_arrivals",
    "replay_decisions",
]


class FakeClock:
    """A clock that moves only when told to (or when something sleeps on it).

    ``auto_advance=True``: a sleep moves time forward at once.  A *deadline*
    (``wait_until``, ``call_at``: a timeout's watchdog, a bulkhead's queue
    timeout) never moves time by itself, since it races the work it bounds;
    but when nothing has moved the clock for ``autojump`` real seconds while
    a deadline is pending, the clock jumps to the earliest one (Trio's
    ``MockClock`` autojump), so a call blocked on something that never comes
    times out instead of hanging the test.  ``autojump=None`` never jumps.
    ``auto_advance=False``: time moves only when the test moves it.
    """

    def __init__(
        self, start: float = 0.0, *, auto_advance: bool = True, autojump: float | None = 0.1
    ) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, got {start!r}")
        autojump = _validate.optional_seconds(autojump, "autojump", positive=True)
        if autojump == math.inf:
            autojump = None  # never jump
        self._now = float(start)
        self.auto_advance = auto_advance
        self.autojump = autojump
        self.sleeps: list[float] = []
        self._cond = threading.Condition()
        self._waiters: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = 0
        self._jumper: threading.Thread | None = None

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        """The same reading; for code that wants a ``time()`` method."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"advance() needs a finite, non-negative number, got {seconds!r}")
        self._move(self._now + seconds)

    def _move(self, to: float) -> None:
        with self._cond:
            self._now = to
            now = self._now
            due = []
            while self._waiters and self._waiters[0][0] <= now:
                due.append(heapq.heappop(self._waiters))
            timers = []
            while self._timers and self._timers[0][0] <= now:
                timers.append(heapq.heappop(self._timers)[2])
            self._cond.notify_all()
        for _, _, loop, future in due:
            if loop.is_closed():
                continue
            loop.call_soon_threadsafe(_resolve, future)
        for timer in timers:
            timer.fire()

    def call_at(self, when: float, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback`` once the clock reads ``when`` or later; return a canceller.

        Never moves time: the callback runs in whichever thread moves the clock
        there (``advance``, ``set``, a sleep on an auto-advancing clock, or the
        ``autojump``), or at once if ``when`` has passed.  For deadlines a thread
        waits out without a timer thread of its own (the bulkhead's sync queue
        timeout): nothing is left blocked when the wait ends early, and an
        auto-advancing clock does not expire the wait by itself.
        """
        if not math.isfinite(when):
            raise ValueError(f"call_at() needs a finite time, got {when!r}")
        timer = _Timer(callback)
        with self._cond:
            if when > self._now:
                self._seq += 1
                heapq.heappush(self._timers, (when, self._seq, timer))
                self._watch_deadlines()
                return timer.cancel
        timer.fire()
        return timer.cancel

    def _watch_deadlines(self) -> None:
        """Start the autojump watcher if a deadline waits on an auto-advancing clock.

        Called under ``_cond``.  One daemon thread per clock, alive only while
        deadlines are pending.
        """
        if not self.auto_advance or self.autojump is None or self._jumper is not None:
            return
        self._jumper = threading.Thread(
            target=self._autojump, name="resilience-fakeclock-autojump", daemon=True
        )
        self._jumper.start()

    def _autojump(self) -> None:
        while True:
            with self._cond:
                seen = self._now
                self._cond.wait(self.autojump)  # any move of the clock notifies
                target = self._next_deadline()
                if target is None:
                    self._jumper = None
                    return
                if self._now != seen or target <= self._now:
                    continue  # something else drives time (or is already waking them)
            self._move(target)

    def _next_deadline(self) -> float | None:
        """The earliest pending deadline (under ``_cond``); resolved ones are dropped."""
        waiters, timers = self._waiters, self._timers
        while waiters and waiters[0][3].done():
            heapq.heappop(waiters)
        while timers and not timers[0][2].alive:
            heapq.heappop(timers)
        found = [heap[0][0] for heap in (waiters, timers) if heap]
        return min(found) if found else None

    def set(self, now: float) -> None:
        """Jump to exactly ``now`` (never backwards)."""
        if not math.isfinite(now):
            raise ValueError(f"set() needs a finite time, got {now!r}")
        self._move(max(now, self._now))

    def step_back(self, seconds: float) -> None:
        """Move time back by ``seconds``, as NTP stepping a wall clock does.

        For tests of what a clock that goes backwards does (``set`` and
        ``advance`` never go back); nobody sleeping is woken.
        """
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"step_back() needs a finite, non-negative number, got {seconds!r}")
        with self._cond:
            self._now -= seconds

    def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        if self.auto_advance:
            self.advance(seconds)
            return
        with self._cond:
            deadline = self._now + seconds
            while self._now < deadline:
                self._cond.wait()

    async def asleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        if self.auto_advance:
            self.advance(seconds)
            await asyncio.sleep(0)  # a real suspension point, as a real sleep would be
            return
        await self._reached(self._now + seconds)

    async def wait_until(self, when: float) -> None:
        """Wait until the clock reads ``when`` or later, *without* moving it.

        For deadlines that race the work they bound (``Timeout``'s async
        watchdog): on an auto-advancing clock ``asleep`` would move time to the
        deadline at once and expire every call; this waits for the work, or
        the test, to move it (or for ``autojump``, when nothing does).
        """
        if not math.isfinite(when):
            raise ValueError(f"wait_until() needs a finite time, got {when!r}")
        await self._reached(when)

    async def _reached(self, when: float) -> None:
        """Await the clock reading ``when`` (a manual sleep, or a deadline)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if when <= self._now:
                return
            self._seq += 1
            heapq.heappush(self._waiters, (when, self._seq, loop, future))
            self._watch_deadlines()  # (starts nothing on a manual clock)
        await future  # cancelling the waiting task cancels the future: no longer pending

    @property
    def pending(self) -> int:
        """How many async sleepers are waiting for time to move."""
        with self._cond:
            return sum(1 for *_, f in self._waiters if not f.done())

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


class _Timer:
    """A ``call_at`` callback that runs at most once, unless cancelled first."""

    __slots__ = ("_callback", "_lock")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback: Callable[[], object] | None = callback
        self._lock = threading.Lock()

    def fire(self) -> None:
        with self._lock:
            callback, self._callback = self._callback, None
        if callback is not None:
            callback()

    def cancel(self) -> None:
        with self._lock:
            self._callback = None

    @property
    def alive(self) -> bool:
        """Neither fired nor cancelled."""
        return self._callback is not None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# -- invariant helpers ------------------------------------------------------------


def max_admitted_in_window(
    times: Sequence[float], period: float, weights: Sequence[float] | None = None
) -> float:
    """Largest total (count, or sum of ``weights``) of ``times`` in any ``[t, t + period)``.

    ``times`` must be sorted.  Two pointers: O(n).
    """
    if period <= 0:
        raise ValueError("period must be positive")
    best: float = 0
    total: float = 0
    start = 0
    for end, t in enumerate(times):
        total += 1 if weights is None else weights[end]
        while times[start] + period <= t:
            total -= 1 if weights is None else weights[start]
            start += 1
        best = max(best, total)
    return best


def max_admitted_in_interval(times: Sequence[float], width: float) -> int:
    """Largest count of ``times`` in any closed interval ``[t, t + width]`` (sorted input)."""
    best = 0
    for i, t in enumerate(times):
        j = bisect.bisect_right(times, t + width)
        best = max(best, j - i)
    return best


def replay_decisions(
    algorithm: Algorithm,
    schedule: Iterable[float | tuple[float, float]],
    key: str = "k",
) -> list[Decision]:
    """Run ``algorithm`` over arrival times (or ``(time, cost)`` pairs) on a fake clock."""
    from resilience.ratelimit.limiter import RateLimiter

    clock = FakeClock()
    limiter = RateLimiter(algorithm, clock=clock)
    out = []
    for item in schedule:
        t, cost = item if isinstance(item, tuple) else (item, 1)
        clock.set(t)
        out.append(limiter.try_acquire(key, cost))
    return out


# -- hypothesis strategies -------------------------------------------------------------


def random_arrivals(max_size: int = 200, horizon: float = 10.0) -> SearchStrategy[list[float]]:
    """Sorted arrival times drawn uniformly over ``[0, horizon]``."""
    return st.lists(
        st.floats(0.0, horizon, allow_nan=False, allow_infinity=False), max_size=max_size
    ).map(sorted)


def periodic_arrivals(
    max_size: int = 200, max_interval: float = 1.0
) -> SearchStrategy[list[float]]:
    """Arrivals at a fixed interval, starting at a random offset."""
    return st.builds(
        lambda start, step, n: [start + step * i for i in range(n)],
        st.floats(0.0, 5.0, allow_nan=False),
        st.floats(0.001, max_interval, allow_nan=False),
        st.integers(0, max_size),
    )


def bursty_arrivals(max_bursts: int = 8, max_burst_size: int = 40) -> SearchStrategy[list[float]]:
    """Bursts of near-simultaneous arrivals separated by gaps; the limiter-breaking shape."""
    burst = st.tuples(
        st.floats(0.0, 3.0, allow_nan=False),  # gap before the burst
        st.integers(1, max_burst_size),  # requests in the burst
        st.floats(0.0, 0.01, allow_nan=False),  # spacing inside the burst
    )

    def build(bursts: list[tuple[float, int, float]]) -> list[float]:
        t = 0.0
        out: list[float] = []
        for gap, size, spacing in bursts:
            t += gap
            for _ in range(size):
                out.append(t)
                t += spacing
        return out

    return st.lists(burst, max_size=max_bursts).map(build)


def arrivals(max_size: int = 200) -> SearchStrategy[list[float]]:
    """Any of the random, periodic and bursty shapes."""
    return st.one_of(random_arrivals(max_size), periodic_arrivals(max_size), bursty_arrivals())


def costs(max_cost: int = 5) -> SearchStrategy[int]:
    """Request costs (weights), mostly 1."""
    return st.one_of(st.just(1), st.integers(1, max_cost))
