"""Three processes share one circuit through Redis (server clock, spawned interpreters).

Failures recorded in two processes open the circuit for the third; a fresh
process sees it open (building a breaker resets nothing); while half-open,
exactly ``half_open_max_calls`` probes are admitted across all processes,
and exactly one process reports each transition.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from typing import Any

import pytest

from resilience.breaker import CircuitBreaker, CircuitState, CountWindow
from resilience.errors import CircuitOpen
from resilience.events import CircuitStateChanged, EventBus
from resilience.redis import RedisStore

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROCESSES = 3
WAIT = 120.0  # generous: spawned interpreters on a busy 2-core machine


def _breaker(url: str, name: str, **kw: Any) -> tuple[CircuitBreaker, RedisStore, list[Any]]:
    store = RedisStore.from_url(url, timeout=5.0)
    seen: list[Any] = []
    breaker = CircuitBreaker(name, store=store, events=EventBus([seen.append]), **kw)
    return breaker, store, seen


def _fail() -> None:
    raise OSError("dependency down")


def _transitions(seen: list[Any]) -> list[tuple[str, str, str]]:
    return [(e.old, e.new, e.reason) for e in seen if isinstance(e, CircuitStateChanged)]


TRIP = {
    "failure_rate_threshold": 0.5,
    "minimum_calls": 4,
    "window": CountWindow(10),
    "open_duration": 3600.0,
}


def trip_worker(url: str, role: int, barrier: Barrier, results: Any) -> None:
    breaker, store, seen = _breaker(url, "shared-trip", **TRIP)
    barrier.wait(timeout=WAIT)  # every process has built its breaker
    failed = 0
    if role < 2:  # two processes fail twice each: neither alone reaches minimum_calls
        for _ in range(2):
            try:
                breaker.call(_fail)
            except OSError:
                failed += 1
    barrier.wait(timeout=WAIT)  # the four failures are in
    state = breaker.state.value
    try:
        breaker.call(int)
        refused = False
    except CircuitOpen:
        refused = True
    store.close()
    results.put(
        {
            "role": role,
            "failed": failed,
            "state": state,
            "refused": refused,
            "transitions": _transitions(seen),
        }
    )


def fresh_worker(url: str, results: Any) -> None:
    breaker, store, _ = _breaker(url, "shared-trip", **TRIP)
    snap = breaker.snapshot()
    results.put({"state": snap.state.value, "retry_after": snap.retry_after})
    store.close()


PROBES = {"consecutive_failures": 1, "open_duration": 0.3, "half_open_max_calls": 3}
ATTEMPTS = 60


def probe_worker(url: str, barrier: Barrier, results: Any) -> None:
    breaker, store, seen = _breaker(url, "shared-probes", **PROBES)
    barrier.wait(timeout=WAIT)  # the circuit is open and its timer has run out
    permits = [breaker.permit() for _ in range(ATTEMPTS)]
    admitted = [p for p in permits if p.allowed]
    barrier.wait(timeout=WAIT)  # every process has asked: now report the probes
    for permit in admitted:
        breaker.on_success(permit)
    store.close()
    results.put({"admitted": len(admitted), "transitions": _transitions(seen)})


def _run(target: Any, args_for: Any, count: int, main_party: Any = None) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(count + (main_party is not None))
    processes = [
        ctx.Process(target=target, args=args_for(i, barrier, results)) for i in range(count)
    ]
    for p in processes:
        p.start()
    try:
        if main_party is not None:
            try:
                main_party(barrier)
            except BaseException:
                barrier.abort()  # release the workers at once
                raise
        return [results.get(timeout=WAIT) for _ in processes]
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=10)


def test_failures_in_two_processes_open_the_circuit_for_the_third(redis_url: str) -> None:
    out = _run(trip_worker, lambda i, b, q: (redis_url, i, b, q), PROCESSES)
    by_role = {r["role"]: r for r in out}
    assert [by_role[i]["failed"] for i in range(3)] == [2, 2, 0]
    assert all(r["state"] == "open" and r["refused"] for r in out)
    # exactly one process made (and reported) the transition
    opened = [t for r in out for t in r["transitions"]]
    assert opened == [("closed", "open", "failure_rate")]

    # a new instance in a fresh process sees the open circuit, and building it reset nothing
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    p = ctx.Process(target=fresh_worker, args=(redis_url, results))
    p.start()
    try:
        fresh = results.get(timeout=WAIT)
    finally:
        p.join(timeout=30)
    assert fresh["state"] == "open" and fresh["retry_after"] > 3000
    breaker, store, _ = _breaker(redis_url, "shared-trip", **TRIP)
    assert breaker.state is CircuitState.OPEN
    store.close()


def test_half_open_admits_exactly_the_probes_across_processes(redis_url: str) -> None:
    def open_then_wait(barrier: Barrier) -> None:
        breaker, store, _ = _breaker(redis_url, "shared-probes", **PROBES)
        try:
            with pytest.raises(OSError):
                breaker.call(_fail)
            assert breaker.snapshot().state is CircuitState.OPEN
            for _ in range(200):  # bounded: the open timer (0.3 s of server time) runs out
                if breaker.state is CircuitState.HALF_OPEN:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("the circuit never became half-open")
            barrier.wait(timeout=WAIT)
            barrier.wait(timeout=WAIT)
        finally:
            store.close()

    out = _run(probe_worker, lambda i, b, q: (redis_url, b, q), PROCESSES, open_then_wait)
    assert sum(r["admitted"] for r in out) == PROBES["half_open_max_calls"]
    transitions = sorted(t for r in out for t in r["transitions"])
    assert transitions == [
        ("half_open", "closed", "probes_succeeded"),
        ("open", "half_open", "open_duration_elapsed"),
    ]
    breaker, store, _ = _breaker(redis_url, "shared-probes", **PROBES)
    assert breaker.state is CircuitState.CLOSED
    store.close()
