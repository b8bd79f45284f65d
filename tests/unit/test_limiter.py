"""RateLimiter behaviour: decisions, waiting, cancellation, store failures, events."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest

from resilience import (
    GCRA,
    FixedWindow,
    InvalidKey,
    LeakyBucket,
    MemoryStore,
    RateLimited,
    RateLimiter,
    SlidingWindowLog,
    StoreUnavailable,
    TokenBucket,
)
from resilience.events import Event, EventBus, RateLimitExceeded, StoreFailed
from resilience.ratelimit.algorithms.base import Algorithm, wait_until
from resilience.ratelimit.decision import Decision
from resilience.testing import FakeClock


def quiet(algorithm: Algorithm, clock: FakeClock | None = None, **kw: object) -> RateLimiter:
    return RateLimiter(algorithm, clock=clock or FakeClock(), events=EventBus(), **kw)  # type: ignore[arg-type]


def test_decision_fields_and_truthiness() -> None:
    limiter = quiet(TokenBucket(2, 1.0))
    first = limiter.try_acquire("a")
    assert first == Decision(True, 2, 1, 0.0, 0.5)
    assert bool(first) is True
    limiter.try_acquire("a")
    third = limiter.try_acquire("a")
    assert not third
    assert third.retry_after == pytest.approx(0.5)
    assert third.reset_after == pytest.approx(1.0)
    assert third.remaining == 0


def test_keys_are_independent() -> None:
    limiter = quiet(FixedWindow(1, 1.0))
    assert limiter.try_acquire("a")
    assert limiter.try_acquire("b")
    assert not limiter.try_acquire("a")


def test_cost_larger_than_capacity_is_rejected_at_once_with_infinite_retry() -> None:
    clock = FakeClock()
    limiter = quiet(GCRA(10, 1.0, burst=5), clock)
    d = limiter.try_acquire("a", cost=6)
    assert not d.allowed and d.retry_after == math.inf
    with pytest.raises(RateLimited) as info:
        limiter.acquire("a", cost=6)  # never waited on
    assert info.value.retry_after == math.inf
    assert clock.sleeps == []
    assert limiter.try_acquire("a", cost=5)  # nothing was consumed


def test_weighted_costs() -> None:
    limiter = quiet(SlidingWindowLog(10, 1.0))
    assert limiter.try_acquire("a", 7).remaining == 3
    assert not limiter.try_acquire("a", 4)
    assert limiter.try_acquire("a", 3).remaining == 0
    assert not limiter.try_acquire("a", 0.5).allowed  # full: even a fractional cost waits


def test_acquire_waits_on_the_clock() -> None:
    clock = FakeClock()
    limiter = quiet(TokenBucket(1, 2.0), clock)
    limiter.acquire("a")
    d = limiter.acquire("a")
    assert d.allowed
    assert clock.monotonic() == pytest.approx(2.0)
    assert clock.sleeps == [pytest.approx(2.0)]


def test_acquire_timeout_raises_without_waiting() -> None:
    clock = FakeClock()
    limiter = quiet(TokenBucket(1, 10.0), clock)
    limiter.acquire("a")
    with pytest.raises(RateLimited) as info:
        limiter.acquire("a", timeout=5.0)
    assert info.value.retry_after == pytest.approx(10.0)
    assert clock.sleeps == []


async def test_aacquire_waits_and_admits() -> None:
    clock = FakeClock()
    limiter = quiet(GCRA(2, 1.0, burst=1), clock)
    await limiter.aacquire("a")
    await limiter.aacquire("a")
    assert clock.monotonic() == pytest.approx(0.5)


async def test_cancelled_waiter_consumes_no_quota() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = quiet(TokenBucket(1, 1.0), clock)
    assert limiter.try_acquire("a")
    waiter = asyncio.create_task(limiter.aacquire("a"))
    for _ in range(100):
        if clock.pending:
            break
        await asyncio.sleep(0)
    assert clock.pending == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.advance(1.0)
    assert limiter.try_acquire("a")  # the cancelled waiter took nothing


async def test_cancelled_shaped_waiter_gives_its_slot_back() -> None:
    clock = FakeClock(auto_advance=False)
    limiter = quiet(LeakyBucket(1, 1.0, capacity=3, mode="shape"), clock)
    first = await limiter.aacquire("a")
    assert first.delay == 0.0
    second = asyncio.create_task(limiter.aacquire("a"))
    for _ in range(100):
        if clock.pending:
            break
        await asyncio.sleep(0)
    assert clock.pending == 1
    before = limiter.try_acquire("probe-free-key")
    assert before.allowed
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    # The queue holds only the first request again: the next one waits 1 s, not 2 s.
    third = limiter.try_acquire("a")
    assert third.allowed and third.delay == pytest.approx(1.0)


def test_shape_mode_delays_each_request_to_the_steady_rate() -> None:
    clock = FakeClock()
    limiter = quiet(LeakyBucket(2, 1.0, capacity=4, mode="shape"), clock)
    delays = [limiter.try_acquire("a").delay for _ in range(4)]
    assert delays == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert not limiter.try_acquire("a")  # queue full
    start = clock.monotonic()
    limiter.acquire("b")
    limiter.acquire("b")
    assert clock.monotonic() - start == pytest.approx(0.5)


def test_shape_delay_longer_than_timeout_is_refunded() -> None:
    clock = FakeClock()
    limiter = quiet(LeakyBucket(1, 1.0, capacity=5, mode="shape"), clock)
    limiter.acquire("a")
    with pytest.raises(RateLimited):
        limiter.acquire("a", timeout=0.5)
    assert limiter.try_acquire("a").delay == pytest.approx(1.0)


class BrokenTable:
    def decide(self, key: str, cost: float, now: float) -> Decision:
        raise StoreUnavailable("connection refused")

    async def adecide(self, key: str, cost: float, now: float) -> Decision:
        raise StoreUnavailable("connection refused")

    def refund(self, key: str, cost: float, now: float) -> None:
        raise StoreUnavailable("connection refused")


class BrokenStore:
    def table(self, algorithm: Algorithm, now: Callable[[], float], name: str) -> BrokenTable:
        return BrokenTable()


async def test_store_errors_follow_the_policy() -> None:
    events: list[Event] = []
    bus = EventBus([events.append])
    open_ = RateLimiter(TokenBucket(5), store=BrokenStore(), on_store_error="fail_open", events=bus)
    assert open_.try_acquire("a").allowed
    assert (await open_.atry_acquire("a")).allowed
    assert open_.store_errors == 2
    closed = RateLimiter(
        TokenBucket(5), store=BrokenStore(), on_store_error="fail_closed", events=bus
    )
    d = closed.try_acquire("a")
    assert not d.allowed and d.retry_after > 0
    with pytest.raises(RateLimited):
        closed.acquire("a", timeout=0)
    backup = quiet(TokenBucket(1, 60.0))
    with_fallback = RateLimiter(TokenBucket(5), store=BrokenStore(), fallback=backup, events=bus)
    assert with_fallback.try_acquire("a").allowed
    assert not (await with_fallback.atry_acquire("a")).allowed  # the fallback's own limit
    kinds = {type(e) for e in events}
    assert StoreFailed in kinds
    assert {e.action for e in events if isinstance(e, StoreFailed)} >= {
        "fail_open",
        "fail_closed",
        "fallback",
    }


def test_invalid_keys_get_a_typed_error() -> None:
    limiter = RateLimiter(TokenBucket(5), store=MemoryStore(max_key_length=16), events=EventBus())
    with pytest.raises(InvalidKey):
        limiter.try_acquire("x" * 17)
    with pytest.raises(InvalidKey):
        limiter.try_acquire(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        limiter.try_acquire(["unhashable"])  # type: ignore[arg-type]
    assert isinstance(InvalidKey("x"), ValueError)


def test_rejections_are_emitted_only_to_debug_sinks_and_a_raising_sink_is_harmless() -> None:
    seen: list[Event] = []

    def boom(event: Event) -> None:
        raise RuntimeError("sink bug")

    bus = EventBus([boom, seen.append])
    limiter = RateLimiter(FixedWindow(1, 1.0), clock=FakeClock(), events=bus, name="api")
    limiter.try_acquire("a")
    assert not limiter.try_acquire("a")
    assert bus.sink_errors == 1
    assert seen == [RateLimitExceeded("api", "a", 1, pytest.approx(1.0))]  # type: ignore[list-item]


def test_info_level_sink_does_not_cost_an_event_per_rejection() -> None:
    class InfoSink:
        min_level = "info"
        calls = 0

        def __call__(self, event: Event) -> None:
            InfoSink.calls += 1

    bus = EventBus([InfoSink()])
    assert bus.sinks and not bus.debug
    limiter = RateLimiter(FixedWindow(1, 1.0), clock=FakeClock(), events=bus)
    for _ in range(5):
        limiter.try_acquire("a")
    assert InfoSink.calls == 0
    with pytest.raises(ValueError, match="min_level"):

        class Bad:
            min_level = "loud"

            def __call__(self, event: Event) -> None: ...

        EventBus([Bad()])


def test_limiter_as_a_policy() -> None:
    limiter = quiet(FixedWindow(1, 1.0))

    @limiter
    def ping() -> str:
        return "pong"

    assert ping() == "pong"
    with pytest.raises(RateLimited):
        ping()


def test_a_full_store_rejects_new_keys_by_default_and_never_forgives_live_ones() -> None:
    clock = FakeClock()
    store = MemoryStore(max_keys=3)
    events: list[Event] = []
    limiter = RateLimiter(
        TokenBucket(1, 10.0), store=store, clock=clock, events=EventBus([events.append])
    )
    for key in "abc":
        assert limiter.try_acquire(key)
    refused = limiter.try_acquire("newcomer")
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(10.0)
    assert [e.action for e in events if isinstance(e, StoreFailed)] == ["reject"]
    assert not limiter.try_acquire("a")  # still limited
    clock.advance(refused.retry_after)
    assert limiter.try_acquire("newcomer")  # room once a key is back to full
    lenient = RateLimiter(
        TokenBucket(1, 10.0), store=MemoryStore(max_keys=1), clock=clock, on_store_full="admit"
    )
    lenient.try_acquire("x")
    assert all(lenient.try_acquire(f"y{i}").allowed for i in range(5))
    with pytest.raises(ValueError, match="on_store_full"):
        RateLimiter(TokenBucket(1), on_store_full="maybe")  # type: ignore[arg-type]


async def test_async_path_shares_the_sync_semantics_for_bad_keys_and_a_full_store() -> None:
    limiter = RateLimiter(TokenBucket(1, 10.0), store=MemoryStore(max_keys=1), clock=FakeClock())
    with pytest.raises(InvalidKey):
        await limiter.atry_acquire(["unhashable"])  # type: ignore[arg-type]
    assert (await limiter.atry_acquire("a")).allowed
    refused = await limiter.atry_acquire("b")  # store full: rejected, not failed open
    assert not refused.allowed and refused.retry_after == pytest.approx(10.0)


def test_decisions_compare_with_their_delay() -> None:
    from resilience.ratelimit.decision import make_decision

    plain = make_decision(True, 5, 4, 0.0, 1.0)
    shaped = make_decision(True, 5, 4, 0.0, 1.0, delay=0.5)
    assert shaped != plain
    assert plain != shaped
    assert (shaped == plain) is False
    assert shaped == make_decision(True, 5, 4, 0.0, 1.0, delay=0.5)
    assert hash(make_decision(True, 5, 4, 0.0, 1.0, delay=0.0)) == hash(plain)
    allowed, limit, remaining, retry_after, reset_after = shaped  # five fields, as the contract
    assert (allowed, limit, remaining, retry_after, reset_after) == (True, 5, 4, 0.0, 1.0)
    assert shaped.delay == 0.5


def test_rate_limited_raised_by_hand_still_prints() -> None:
    assert str(RateLimited()) == ""  # type: ignore[call-arg]
    assert str(RateLimited("slow down")) == "slow down"  # type: ignore[arg-type]
    assert RateLimited("slow down").retry_after == 0.0  # type: ignore[arg-type]


def test_fixed_window_never_rebuilds_an_older_window_for_a_late_reading() -> None:
    algorithm = FixedWindow(3, 1.0)
    state = None
    for t in (1.01, 1.02, 1.03):
        state, d = algorithm.decide(state, t, 1)
        assert d.allowed
    state, late = algorithm.decide(state, 0.999, 1)  # a thread that read the clock earlier
    assert not late.allowed


def test_sliding_log_keeps_its_entries_sorted_when_a_clock_steps_back() -> None:
    """Another host's slower clock: entries from its future count from its now, sorted."""
    log = SlidingWindowLog(2, 1.0)
    state, first = log.decide(None, 10.0, 1)
    assert first.allowed and first.reset_after == 1.0
    state, behind = log.decide(state, 9.5, 1)  # the entry at 10.0 now counts from 9.5
    assert behind.allowed and behind.reset_after == 1.0
    assert state is not None and list(state.times) == [9.5, 9.5]
    state, rejected = log.decide(state, 9.6, 1)
    assert not rejected.allowed and rejected.retry_after == wait_until(9.6, 10.5)
    state, later = log.decide(state, 10.5, 1)  # both entries have left
    assert later.allowed and later.remaining == 1


def test_fixed_window_restarts_the_newest_window_for_a_clock_behind_it() -> None:
    window = FixedWindow(2, 1.0)
    state, _ = window.decide(None, 5.5, 2)  # window [5, 6) is full
    state, late = window.decide(state, 4.9, 1)  # a clock behind: [4.9, 5.9), count kept
    assert not late.allowed and late.retry_after == wait_until(4.9, 4.9 + 1.0) <= 1.0 + 1e-12
    assert not window.decide(state, 5.8, 1)[1].allowed
    assert window.decide(state, 4.9 + 1.0, 1)[1].allowed  # retrying after retry_after works


def test_sliding_log_forgets_float_residue_with_its_last_entry() -> None:
    """Fractional costs leave 1e-17 in the running total; an empty log must not trust it."""
    log = SlidingWindowLog(2, 0.1)
    state = None
    for t, cost in [(0.0, 1), (0.0, 0.1), (0.0, 0.1), (0.0, 0.1)]:
        state, _ = log.decide(state, t, cost)
    state, decision = log.decide(state, 1.0, 2)  # every entry has left: the full limit fits
    assert decision.allowed and decision.remaining == 0


def test_sliding_log_retry_after_is_finite_despite_fractional_residue() -> None:
    """0.1 + 1 - 1 is 0.10000000000000009: a "cost that must leave" scan answered never."""
    log = SlidingWindowLog(1, 0.25)
    state, first = log.decide(None, 0.0, 0.1)
    assert first.allowed
    state, refused = log.decide(state, 0.125, 1)
    assert not refused.allowed and refused.retry_after == 0.125  # was inf
    assert log.decide(state, 0.25, 1)[1].allowed
