"""Bulkhead: the limit holds, the queue is bounded and every permit comes back."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from resilience.bulkhead import Bulkhead
from resilience.errors import BulkheadFull
from resilience.events import BulkheadRejected, Event, EventBus

WAIT = 10.0  # generous bound on every blocking wait in these tests (never a timing assertion)


class Gauge:
    """Counts calls running at once, thread-safely, and remembers the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def quiet(name: str = "b", **kwargs: Any) -> Bulkhead:
    return Bulkhead(name, events=EventBus(), **kwargs)


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"max_queue": -1}, "max_queue"),
        ({"queue_timeout": -1}, "queue_timeout"),
        ({"queue_timeout": float("nan")}, "queue_timeout"),
        ({"queue_timeout": "1"}, "queue_timeout"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Bulkhead("b", **kwargs)


def test_name_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match="name"):
        Bulkhead("")


def test_defaults_and_repr() -> None:
    b = Bulkhead("db")
    assert (b.name, b.max_concurrent, b.max_queue, b.queue_timeout) == ("db", 10, 0, None)
    assert (b.active, b.queued) == (0, 0)
    assert "db" in repr(b)


# -- sync ---------------------------------------------------------------------------


def test_call_returns_result_and_frees_the_slot() -> None:
    b = quiet(max_concurrent=1)

    def add(x: int, y: int = 0) -> int:
        return x + y

    assert b.call(add, 1, y=2) == 3
    assert b.active == 0


def test_exception_frees_the_slot() -> None:
    b = quiet(max_concurrent=1)

    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        b.call(boom)
    assert b.active == 0
    assert b.call(lambda: 1) == 1


def test_full_without_queue_rejects_at_once() -> None:
    b = quiet(max_concurrent=1)

    def inner() -> int:
        assert b.active == 1
        with pytest.raises(BulkheadFull) as info:
            b.call(lambda: 2)
        assert info.value.name == "b"
        return 1

    assert b.call(inner) == 1
    assert b.active == 0


def test_decorator_keeps_metadata() -> None:
    b = quiet()

    @b
    def add(x: int, y: int) -> int:
        """Add."""
        return x + y

    assert add(2, 3) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Add."


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize(("n", "m"), [(1, 3), (3, 5), (4, 4)])
def test_threads_n_plus_m_callers_at_most_n_run(n: int, m: int) -> None:
    b = quiet(max_concurrent=n, max_queue=m)
    gauge = Gauge()
    barrier = threading.Barrier(n + m)
    release = threading.Event()
    results: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        gauge.enter()
        try:
            release.wait(WAIT)
        finally:
            gauge.leave()

    def caller(_: int) -> None:
        barrier.wait(WAIT)
        try:
            b.call(work)
            outcome = "ran"
        except BulkheadFull:
            outcome = "rejected"
        with lock:
            results.append(outcome)

    def opener() -> None:
        # Let the callers pile up: all N slots taken and M waiting, then open.
        for _ in range(10_000):
            if b.active == n and b.queued == m:
                break
            threading.Event().wait(0.001)
        release.set()

    t = threading.Thread(target=opener)
    t.start()
    run_threads(n + m, caller)
    t.join(WAIT)
    assert gauge.peak <= n
    assert results.count("ran") == n + m
    assert (b.active, b.queued) == (0, 0)


def test_threads_queue_overflow_rejected() -> None:
    b = quiet(max_concurrent=2, max_queue=1)
    release = threading.Event()
    barrier = threading.Barrier(6)
    outcomes: list[str] = []
    lock = threading.Lock()

    def caller(_: int) -> None:
        barrier.wait(WAIT)
        try:
            b.call(release.wait, WAIT)
            outcome = "ran"
        except BulkheadFull:
            outcome = "rejected"
        with lock:
            outcomes.append(outcome)
        if outcomes.count("rejected") == 3:
            release.set()

    run_threads(6, caller)
    assert outcomes.count("ran") == 3
    assert outcomes.count("rejected") == 3
    assert (b.active, b.queued) == (0, 0)


def test_thread_queue_timeout_raises_bulkhead_full_and_leaves_the_queue() -> None:
    b = quiet(max_concurrent=1, max_queue=1, queue_timeout=0.01)
    release = threading.Event()
    inside = threading.Event()

    def hold() -> None:
        inside.set()
        release.wait(WAIT)

    holder = threading.Thread(target=b.call, args=(hold,))
    holder.start()
    assert inside.wait(WAIT)
    with pytest.raises(BulkheadFull):
        b.call(lambda: None)
    assert b.queued == 0
    release.set()
    holder.join(WAIT)
    assert (b.active, b.queued) == (0, 0)


def test_thread_waits_with_a_huge_queue_timeout() -> None:
    b = quiet(max_concurrent=1, max_queue=1, queue_timeout=1e12)  # beyond threading.TIMEOUT_MAX
    release = threading.Event()
    inside = threading.Event()
    done: list[int] = []

    def hold() -> None:
        inside.set()
        release.wait(WAIT)

    holder = threading.Thread(target=b.call, args=(hold,))
    holder.start()
    assert inside.wait(WAIT)
    waiter = threading.Thread(target=b.call, args=(done.append, 1))
    waiter.start()
    for _ in range(10_000):
        if b.queued == 1:
            break
        threading.Event().wait(0.001)
    release.set()
    holder.join(WAIT)
    waiter.join(WAIT)
    assert done == [1]
    assert (b.active, b.queued) == (0, 0)


def test_threads_queue_is_fifo() -> None:
    b = quiet(max_concurrent=1, max_queue=5)
    release = threading.Event()
    inside = threading.Event()
    order: list[int] = []

    def hold() -> None:
        inside.set()
        release.wait(WAIT)

    holder = threading.Thread(target=b.call, args=(hold,))
    holder.start()
    assert inside.wait(WAIT)
    threads = []
    for i in range(5):
        t = threading.Thread(target=b.call, args=(order.append, i))
        t.start()
        threads.append(t)
        for _ in range(10_000):  # wait until this one is queued, so the order is known
            if b.queued == i + 1:
                break
            threading.Event().wait(0.001)
    release.set()
    for t in [holder, *threads]:
        t.join(WAIT)
    assert order == [0, 1, 2, 3, 4]
    assert (b.active, b.queued) == (0, 0)


def test_threads_random_failures_and_timeouts_return_every_permit() -> None:
    n = 3
    b = quiet(max_concurrent=n, max_queue=6, queue_timeout=0.005)
    gauge = Gauge()
    rng = random.Random(7)
    plans = [rng.choice(["ok", "raise", "slow"]) for _ in range(24)]
    barrier = threading.Barrier(len(plans))

    def work(plan: str) -> None:
        gauge.enter()
        try:
            if plan == "raise":
                raise RuntimeError("boom")
            threading.Event().wait(0.002 if plan == "slow" else 0)
        finally:
            gauge.leave()

    def caller(i: int) -> None:
        barrier.wait(WAIT)
        for _ in range(3):
            with contextlib.suppress(RuntimeError, BulkheadFull):
                b.call(work, plans[i])

    run_threads(len(plans), caller)
    assert gauge.peak <= n
    assert (b.active, b.queued) == (0, 0)
    # All N permits are usable again.
    hold = threading.Event()
    entered = threading.Barrier(n + 1)

    def holder(_: int) -> None:
        b.call(lambda: (entered.wait(WAIT), hold.wait(WAIT)))

    threads = [threading.Thread(target=holder, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    entered.wait(WAIT)
    assert b.active == n
    hold.set()
    for t in threads:
        t.join(WAIT)
    assert b.active == 0


# -- async --------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(1, 4), (5, 5), (8, 2)])
async def test_tasks_n_plus_m_callers_at_most_n_run(n: int, m: int) -> None:
    b = quiet(max_concurrent=n, max_queue=m)
    gauge = Gauge()
    release = asyncio.Event()

    async def work() -> None:
        gauge.enter()
        try:
            await release.wait()
        finally:
            gauge.leave()

    tasks = [asyncio.create_task(b.acall(work)) for _ in range(n + m)]
    for _ in range(1000):
        if b.active == n and b.queued == m:
            break
        await asyncio.sleep(0)
    assert (b.active, b.queued) == (n, m)
    extra = asyncio.create_task(b.acall(work))
    with pytest.raises(BulkheadFull):
        await extra
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    assert gauge.peak == n
    assert (b.active, b.queued) == (0, 0)


async def test_async_queue_timeout() -> None:
    b = quiet(max_concurrent=1, max_queue=2, queue_timeout=0.01)
    release = asyncio.Event()
    holder = asyncio.create_task(b.acall(release.wait))
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull):
        await b.acall(asyncio.sleep, 0)
    assert b.queued == 0
    release.set()
    await holder
    assert b.active == 0


async def test_cancelled_waiter_takes_no_slot() -> None:
    b = quiet(max_concurrent=1, max_queue=3)
    release = asyncio.Event()
    holder = asyncio.create_task(b.acall(release.wait))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(b.acall(asyncio.sleep, 0))
    await asyncio.sleep(0)
    assert b.queued == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert b.queued == 0
    release.set()
    await holder
    assert (b.active, b.queued) == (0, 0)


async def test_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    b = quiet(max_concurrent=1, max_queue=3)
    release = asyncio.Event()
    ran: list[str] = []

    async def note(label: str) -> None:
        ran.append(label)

    first: asyncio.Task[None] | None = None

    async def hold_then_cancel_first() -> None:
        await b.acall(release.wait)
        # Our slot was just handed to `first`; its task has not resumed yet.
        assert first is not None
        first.cancel()

    holder = asyncio.create_task(hold_then_cancel_first())
    await asyncio.sleep(0)
    first = asyncio.create_task(b.acall(note, "first"))
    second = asyncio.create_task(b.acall(note, "second"))
    await asyncio.sleep(0)
    assert b.queued == 2
    release.set()
    await holder
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, WAIT)
    assert ran == ["second"]
    assert (b.active, b.queued) == (0, 0)


async def test_cancelled_running_call_frees_its_slot() -> None:
    b = quiet(max_concurrent=1)
    task = asyncio.create_task(b.acall(asyncio.sleep, 100))
    await asyncio.sleep(0)
    assert b.active == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.active == 0


async def test_tasks_random_cancellations_timeouts_exceptions_return_every_permit() -> None:
    n = 4
    b = quiet(max_concurrent=n, max_queue=8, queue_timeout=0.01)
    gauge = Gauge()
    rng = random.Random(11)
    start = asyncio.Event()

    async def work(plan: str) -> None:
        gauge.enter()
        try:
            if plan == "raise":
                raise RuntimeError("boom")
            await asyncio.sleep(0.003 if plan == "slow" else 0)
        finally:
            gauge.leave()

    async def caller(plan: str) -> None:
        await start.wait()  # the barrier: everyone starts together
        try:
            if plan == "timeout":
                await asyncio.wait_for(b.acall(work, "slow"), 0.001)
            else:
                await b.acall(work, plan)
        except (RuntimeError, BulkheadFull, TimeoutError):
            pass

    plans = [rng.choice(["ok", "raise", "slow", "timeout", "cancel"]) for _ in range(60)]
    tasks = [asyncio.create_task(caller(p)) for p in plans]
    await asyncio.sleep(0)
    start.set()
    for _ in range(3):
        await asyncio.sleep(0)
    for task, plan in zip(tasks, plans, strict=True):
        if plan == "cancel":
            task.cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
    assert gauge.peak <= n
    assert (b.active, b.queued) == (0, 0)
    release = asyncio.Event()
    holders = [asyncio.create_task(b.acall(release.wait)) for _ in range(n)]
    await asyncio.sleep(0)
    assert b.active == n
    release.set()
    await asyncio.gather(*holders)
    assert b.active == 0


async def test_threads_and_tasks_share_one_bulkhead() -> None:
    b = quiet(max_concurrent=2, max_queue=10)
    gauge = Gauge()
    release = threading.Event()

    def sync_work() -> None:
        gauge.enter()
        try:
            release.wait(WAIT)
        finally:
            gauge.leave()

    async def async_work() -> None:
        gauge.enter()
        try:
            await asyncio.sleep(0)
        finally:
            gauge.leave()

    threads = [threading.Thread(target=b.call, args=(sync_work,)) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(10_000):
        if b.active == 2:
            break
        await asyncio.sleep(0.001)
    tasks = [asyncio.create_task(b.acall(async_work)) for _ in range(3)]
    await asyncio.sleep(0)
    assert b.queued == 3
    release.set()  # threads release from their own threads: tasks are woken thread-safely
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    for t in threads:
        t.join(WAIT)
    assert gauge.peak <= 2
    assert (b.active, b.queued) == (0, 0)


async def test_async_decorator() -> None:
    b = quiet()

    @b
    async def double(x: int) -> int:
        return 2 * x

    assert await double(4) == 8


# -- events -------------------------------------------------------------------------


def test_rejection_emits_event_only_when_someone_listens() -> None:
    seen: list[Event] = []
    b = Bulkhead("svc", max_concurrent=1, events=EventBus([seen.append]))

    def inner() -> None:
        with pytest.raises(BulkheadFull):
            b.call(lambda: None)

    b.call(inner)
    assert seen == [BulkheadRejected("svc", "full")]
