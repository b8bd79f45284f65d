"""Every policy through both drivers: ``call`` and ``await acall`` agree on outcomes and events.

Each scenario builds a fresh policy on a fresh ``FakeClock`` and ``EventBus``
(a plain sink, so debug-level events are captured too) for each driver, runs
the same script of calls and clock moves, and compares, step by step, what
came back (a value, or an exception's type and message) and every event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from resilience import (
    AdaptiveBulkhead,
    Backoff,
    Bulkhead,
    CircuitBreaker,
    CountWindow,
    LeakyBucket,
    MemoryIdempotencyStore,
    RateLimiter,
    TimeWindow,
    TokenBucket,
    compose,
    fallback,
    retry,
    timeout,
)
from resilience.breaker import BreakerConfig, MemoryBreakerTable
from resilience.events import EventBus
from resilience.idempotency import idempotent
from resilience.policy import Policy
from resilience.ratelimit import rate_limit
from resilience.testing import FakeClock
from tests.unit.test_breaker_store import RemoteLikeOps


class Boom(Exception):
    pass


@dataclass(frozen=True)
class Ok:
    value: Any = "ok"
    takes: float = 0.0  # seconds of (fake) time the call lasts


@dataclass(frozen=True)
class Fail:
    exc: type[BaseException] = Boom
    takes: float = 0.0


@dataclass(frozen=True)
class Flaky:
    """Fail the first ``failures`` attempts of this step, then return ``value``."""

    failures: int
    value: Any = "ok"
    takes: float = 0.0


@dataclass(frozen=True)
class Nested:
    """Call the policy again from inside the protected call (a bulkhead's slot is held)."""


@dataclass(frozen=True)
class Advance:
    seconds: float


@dataclass(frozen=True)
class Control:
    """An operator control or read, by name, on the policy (``force_open``, ``snapshot``...)."""

    name: str


Step = Ok | Fail | Flaky | Nested | Advance | Control


class AsyncCapable:
    """A non-local breaker table: sync operations and ``aio`` over one in-memory table.

    ``acall`` must go through ``aio`` (counted in ``used``), ``call`` through the sync side.
    """

    local = False
    closed = None

    def __init__(self, config: BreakerConfig, now: Any) -> None:
        inner = MemoryBreakerTable(config, now)
        self.used: list[str] = []
        self.state, self.acquire, self.record = inner.state, inner.acquire, inner.record
        self.release, self.force, self.reset = inner.release, inner.force, inner.reset
        self.snapshot = inner.snapshot
        self.aio = RemoteLikeOps(inner, self.used)


class AsyncCapableStore:
    def breaker_table(self, name: str, config: BreakerConfig, now: Any) -> AsyncCapable:
        return AsyncCapable(config, now)


Build = Callable[[FakeClock, EventBus], Policy]


def breaker(**options: Any) -> Build:
    options.setdefault("minimum_calls", 2)
    options.setdefault("window", CountWindow(2))
    options.setdefault("open_duration", 10.0)
    return lambda clock, bus: CircuitBreaker("cb", clock=clock, events=bus, **options)


def limiter(algorithm: Any, **options: Any) -> Build:
    def build(clock: FakeClock, bus: EventBus) -> Policy:
        lim = RateLimiter(algorithm, clock=clock, name="rl", events=bus)
        return rate_limit(lim, **options) if options else lim

    return build


def idempotent_policy(clock: FakeClock, bus: EventBus) -> Policy:
    return idempotent(
        MemoryIdempotencyStore(),
        key=lambda step: "fail" if isinstance(step, Fail) else "one",
        fingerprint=lambda step: "same",
        clock=clock,
        name="idem",
        events=bus,
    )


TRIP = [Fail(), Fail()]
STEADY = Backoff(0.5, 4.0, 2.0, jitter=None)
SCENARIOS: dict[str, tuple[Build, list[Step]]] = {
    "limiter: allowed, rejected, refilled": (
        limiter(TokenBucket(2, 1.0)),
        [Ok(), Ok(), Ok(), Advance(0.5), Ok()],
    ),
    "limiter: acquire waits on the clock": (
        limiter(TokenBucket(1, 1.0), wait=True),
        [Ok(), Ok(), Ok()],
    ),
    "limiter: wait gives up at its timeout": (
        limiter(TokenBucket(1, 10.0), wait=True, timeout=1.0),
        [Ok(), Ok()],
    ),
    "limiter: shaping delay": (
        limiter(LeakyBucket(1, 1.0, capacity=3, mode="shape")),
        [Ok(1), Ok(2), Ok(3)],
    ),
    "breaker: closed, successes and failures": (breaker(), [Ok(), Fail(), Ok(), Ok()]),
    "breaker: opens, rejects, half-open probe closes": (
        breaker(),
        [*TRIP, Ok(), Advance(10.0), Ok(), Ok()],
    ),
    "breaker: half-open probe fails and reopens": (
        breaker(),
        [*TRIP, Advance(10.0), Fail(), Ok()],
    ),
    "breaker: ignored and unrecorded exceptions": (
        breaker(ignore=KeyError, record=(Boom, KeyError)),
        [Fail(KeyError), Fail(KeyError), Fail(ValueError), Fail(Boom), Fail(Boom), Ok()],
    ),
    "breaker: failure_if": (
        breaker(failure_if=lambda result: result == "bad"),
        [Ok("bad"), Ok("fine"), Ok("bad"), Ok("bad"), Ok("fine")],
    ),
    "breaker: slow calls on a time window": (
        breaker(window=TimeWindow(60), slow_call_duration=1.0, failure_rate_threshold=None),
        [Ok(takes=2.0), Ok(takes=2.0), Ok(), Advance(10.0), Ok(takes=0.5)],
    ),
    "breaker: consecutive failures": (
        breaker(consecutive_failures=3, failure_rate_threshold=None),
        [Fail(), Fail(), Ok(), Fail(), Fail(), Fail(), Ok()],
    ),
    "breaker: forced open, then reset": (
        breaker(),
        [Control("force_open"), Ok(), Control("snapshot"), Control("reset"), Ok()],
    ),
    "breaker: a non-local table through Io steps": (
        breaker(store=AsyncCapableStore()),
        [Ok(), *TRIP, Ok(), Advance(10.0), Ok(), Fail(KeyboardInterrupt)],
    ),
    "bulkhead: a slot, then full": (
        lambda clock, bus: Bulkhead("bh", max_concurrent=1, clock=clock, events=bus),
        [Ok(), Nested(), Ok()],
    ),
    "bulkhead: queued waiter times out on the clock": (
        lambda clock, bus: Bulkhead(
            "bh", max_concurrent=1, max_queue=1, queue_timeout=2.0, clock=clock, events=bus
        ),
        [Nested(), Ok()],
    ),
    "adaptive bulkhead": (
        lambda clock, bus: AdaptiveBulkhead("ab", initial_limit=1, clock=clock, events=bus),
        [Ok(takes=0.1), Fail(TimeoutError), Nested()],
    ),
    "retry: two failures then success, then exhausted": (
        lambda clock, bus: retry(attempts=3, backoff=STEADY, clock=clock, events=bus),
        [Flaky(2), Fail(), Ok()],
    ),
    "timeout: in time": (lambda clock, bus: timeout(5.0, clock=clock), [Ok(takes=1.0), Ok()]),
    "timeout: late": (
        lambda clock, bus: timeout(5.0, clock=clock),
        [Ok(takes=5.0), Ok(takes=6.0), Fail(takes=7.0), Ok()],
    ),
    "fallback": (lambda clock, bus: fallback("plan b", on=Boom), [Fail(), Ok(), Fail(KeyError)]),
    "compose: fallback, retry, breaker, bulkhead": (
        lambda clock, bus: compose(
            fallback("plan b", on=Exception),
            retry(attempts=2, backoff=STEADY, clock=clock, events=bus),
            breaker()(clock, bus),
            Bulkhead("bh", clock=clock, events=bus),
        ),
        [Fail(), Flaky(1), Ok(), Ok()],
    ),
    "idempotent: replayed; a failure releases its key": (
        idempotent_policy,
        [Ok("first"), Ok("second"), Fail(), Fail(KeyError), Advance(1.0), Ok("third")],
    ),
}


def verdict(step: Ok | Fail | Flaky, attempts: dict[int, int]) -> Any:
    if isinstance(step, Fail):
        raise step.exc("failed")
    if isinstance(step, Flaky):
        seen = attempts[id(step)] = attempts.get(id(step), 0) + 1
        if seen <= step.failures:
            raise Boom(f"attempt {seen}")
    return step.value


def outcome(exc: BaseException) -> tuple[str, str]:
    return (type(exc).__name__.lstrip("_"), str(exc))  # _CircuitOpen is a CircuitOpen


def new_clock(build: Build) -> FakeClock:
    # Auto-advancing for every policy: Timeout's async watchdog waits on the clock
    # (FakeClock.wait_until) without moving it.
    return FakeClock()


def run_sync(build: Build, script: list[Step]) -> tuple[list[Any], list[Any]]:
    clock, events = new_clock(build), list[Any]()
    policy = build(clock, EventBus([events.append]))
    results: list[Any] = []
    attempts: dict[int, int] = {}

    def body(step: Step) -> Any:
        if isinstance(step, Nested):
            return policy.call(lambda: "inner")
        assert isinstance(step, Ok | Fail | Flaky)
        clock.advance(step.takes)
        return verdict(step, attempts)

    for step in script:
        if isinstance(step, Advance):
            clock.advance(step.seconds)
        elif isinstance(step, Control):
            results.append(("control", getattr(policy, step.name)()))
        else:
            try:
                results.append(("ok", policy.call(body, step)))
            except BaseException as exc:
                results.append(outcome(exc))
    results.append(("clock", clock.monotonic()))
    return results, [repr(e) for e in events]


async def run_async(build: Build, script: list[Step]) -> tuple[list[Any], list[Any]]:
    clock, events = new_clock(build), list[Any]()
    policy = build(clock, EventBus([events.append]))
    results: list[Any] = []
    attempts: dict[int, int] = {}

    async def body(step: Step) -> Any:
        if isinstance(step, Nested):

            async def inner() -> str:
                return "inner"

            return await policy.acall(inner)
        assert isinstance(step, Ok | Fail | Flaky)
        clock.advance(step.takes)
        await asyncio.sleep(0)  # a real suspension, as real I/O would be
        return verdict(step, attempts)

    for step in script:
        if isinstance(step, Advance):
            clock.advance(step.seconds)
        elif isinstance(step, Control):
            results.append(("control", await getattr(policy, "a" + step.name)()))
        else:
            try:
                results.append(("ok", await policy.acall(body, step)))
            except BaseException as exc:
                results.append(outcome(exc))
    results.append(("clock", clock.monotonic()))
    return results, [repr(e) for e in events]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_both_drivers_agree(scenario: str) -> None:
    build, script = SCENARIOS[scenario]
    sync_results, sync_events = run_sync(build, script)
    async_results, async_events = asyncio.run(run_async(build, script))
    assert async_results == sync_results
    assert async_events == sync_events


def test_the_scenarios_exercise_what_they_claim() -> None:
    """Guard against a script that proves nothing: outcomes differ within scenarios."""
    results, events = run_sync(*SCENARIOS["breaker: opens, rejects, half-open probe closes"])
    assert ("CircuitOpen", "circuit 'cb' is open; retry after 10.000s") in results
    assert any("half_open" in e for e in events)
    results, events = run_sync(*SCENARIOS["bulkhead: queued waiter times out on the clock"])
    assert ("BulkheadFull", "bulkhead 'bh' is full") in results or any(
        "timeout" in e for e in events
    )
    results, _ = run_sync(*SCENARIOS["limiter: wait gives up at its timeout"])
    assert results[1][0] == "RateLimited"


def test_a_non_local_table_is_awaited_only_by_the_async_driver() -> None:
    build, _ = SCENARIOS["breaker: a non-local table through Io steps"]
    clock = FakeClock()
    policy = build(clock, EventBus())
    assert isinstance(policy, CircuitBreaker)

    async def body() -> str:
        return "ok"

    assert asyncio.run(policy.acall(body)) == "ok"
    table = policy._table
    assert isinstance(table, AsyncCapable)
    assert table.used == ["acquire", "record"]
    assert policy.call(lambda: "ok") == "ok"
    assert table.used == ["acquire", "record"]  # the sync driver used the sync side
