"""Bulkhead against a plain model: limit, FIFO queue, refusals, and every permit back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience.bulkhead import Bulkhead
from resilience.errors import BulkheadFull
from resilience.events import EventBus

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ops = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.sampled_from(["ok", "raise"])),
        st.tuples(st.just("finish"), st.integers(0, 50)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("finish_then_cancel_head"), st.integers(0, 50)),
    ),
    max_size=40,
)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def scenario(n: int, m: int, steps: list[tuple[str, Any]]) -> None:
    b = Bulkhead("p", max_concurrent=n, max_queue=m, events=EventBus())
    gates: list[asyncio.Event] = []
    tasks: list[asyncio.Task[Any]] = []
    inside: set[int] = set()
    running: list[int] = []  # the model
    queue: list[int] = []
    peak = 0

    async def work(i: int, plan: str) -> str:
        nonlocal peak
        inside.add(i)
        peak = max(peak, len(inside))
        try:
            await gates[i].wait()
            if plan == "raise":
                raise RuntimeError("boom")
            return "ok"
        finally:
            inside.discard(i)

    def finish(i: int) -> None:
        running.remove(i)
        gates[i].set()

    def promote() -> None:
        while queue and len(running) < n:
            running.append(queue.pop(0))

    for op, arg in steps:
        if op == "arrive":
            i = len(tasks)
            gates.append(asyncio.Event())
            tasks.append(asyncio.create_task(b.acall(work, i, arg)))
            await asyncio.sleep(0)
            if len(running) < n and not queue:
                running.append(i)
            elif len(queue) < m:
                queue.append(i)
            else:
                assert tasks[i].done()
                assert isinstance(tasks[i].exception(), BulkheadFull)
        elif op == "finish" and running:
            finish(running[arg % len(running)])
            promote()
        elif op == "cancel" and (running or queue):
            pending = running + queue
            i = pending[arg % len(pending)]
            tasks[i].cancel()
            if i in running:
                running.remove(i)
            else:
                queue.remove(i)
            promote()
        elif op == "finish_then_cancel_head" and running and queue:
            # The head is handed the freed slot and cancelled before it runs: it
            # must pass the slot on.
            finish(running[arg % len(running)])
            await asyncio.sleep(0)  # the finished call releases; the head is granted
            head = queue.pop(0)
            tasks[head].cancel()
            promote()
        await settle()
        assert inside == set(running)
        assert (b.active, b.queued) == (len(running), len(queue))
        assert peak <= n

    for i in list(running) + list(queue):
        tasks[i].cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert (b.active, b.queued) == (0, 0)
    # All N permits are usable again.
    hold = asyncio.Event()
    holders = [asyncio.create_task(b.acall(hold.wait)) for _ in range(n)]
    await settle()
    assert b.active == n
    hold.set()
    await asyncio.gather(*holders)


@SETTINGS
@given(n=st.integers(1, 4), m=st.integers(0, 4), steps=ops)
def test_tasks_match_the_model(n: int, m: int, steps: list[tuple[str, Any]]) -> None:
    asyncio.run(scenario(n, m, steps))


@settings(SETTINGS, max_examples=25)
@given(
    n=st.integers(1, 4),
    m=st.integers(0, 4),
    plans=st.lists(st.sampled_from(["ok", "raise", "slow"]), min_size=1, max_size=12),
    queue_timeout=st.sampled_from([None, 0.0, 0.002]),
)
def test_threads_behind_a_barrier_return_every_permit(
    n: int, m: int, plans: list[str], queue_timeout: float | None
) -> None:
    b = Bulkhead("t", max_concurrent=n, max_queue=m, queue_timeout=queue_timeout, events=EventBus())
    barrier = threading.Barrier(len(plans))
    lock = threading.Lock()
    now = peak = 0
    outcomes: list[str] = []

    def work(plan: str) -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        try:
            if plan == "raise":
                raise RuntimeError("boom")
            if plan == "slow":
                threading.Event().wait(0.001)
        finally:
            with lock:
                now -= 1

    def caller(plan: str) -> None:
        barrier.wait(10)
        try:
            b.call(work, plan)
            outcome = "ok"
        except RuntimeError:
            outcome = "raised"
        except BulkheadFull:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=caller, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(outcomes) == len(plans)
    assert peak <= n
    assert (b.active, b.queued) == (0, 0)
