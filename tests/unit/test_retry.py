"""retry: tenacity's engine behind a fast first attempt, on an injected clock."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import pytest
import tenacity

from resilience.errors import RateLimited
from resilience.events import Event, EventBus, RetryScheduled
from resilience.policy import Policy
from resilience.ratelimit.decision import Decision
from resilience.retrying import NEVER_RETRIED, Backoff, Retry, RetryBudget, retry
from resilience.testing import FakeClock

NO_JITTER = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=None)


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"; counts calls."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.error = error if error is not None else ValueError("flaky")
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"

    async def acall(self, *args: Any, **kwargs: Any) -> str:
        await asyncio.sleep(0)
        return self(*args, **kwargs)


def quiet(**kwargs: Any) -> Retry:
    kwargs.setdefault("clock", FakeClock())
    kwargs.setdefault("events", EventBus())
    return retry(**kwargs)


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"on": ()}, "on"),
        ({"on": (ValueError, "x")}, "on"),
        ({"on": 3}, "on"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": float("nan")}, "deadline"),
        ({"budget": 5}, "budget"),
        ({"backoff": 5}, "backoff"),
        ({"max_retry_after": float("inf")}, "max_retry_after"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        retry(**kwargs)


def test_is_a_policy_with_a_repr() -> None:
    r = retry()
    assert isinstance(r, Policy)
    assert r.name == "retry"
    assert "attempts=3" in repr(r)
    assert r.on == (Exception,)
    assert retry(on=KeyError).on == (KeyError,)


# -- the fast path -----------------------------------------------------------------


def test_first_attempt_success_creates_no_tenacity_state(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    original = tenacity.RetryCallState.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        created.append("state")
        original(self, *args, **kwargs)

    monkeypatch.setattr(tenacity.RetryCallState, "__init__", counting)
    clock = FakeClock()
    r = quiet(clock=clock)
    assert r.call(lambda x: x + 1, 1) == 2

    @r
    def decorated(x: int) -> int:
        return x * 2

    assert decorated(4) == 8
    assert created == []
    assert clock.sleeps == []
    assert r.call(Flaky(1)) == "ok"
    assert created == ["state"]


async def test_async_first_attempt_success_creates_no_tenacity_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: list[str] = []
    original = tenacity.RetryCallState.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        created.append("state")
        original(self, *args, **kwargs)

    monkeypatch.setattr(tenacity.RetryCallState, "__init__", counting)
    r = quiet()

    async def ok(x: int) -> int:
        return x

    assert await r.acall(ok, 3) == 3
    assert await r(ok)(5) == 5
    assert created == []


# -- retrying ------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["call", "decorator"])
def test_retries_until_success_with_exponential_sleeps(via: str) -> None:
    clock = FakeClock()
    r = quiet(attempts=5, backoff=NO_JITTER, clock=clock)
    flaky = Flaky(3)
    result = r.call(flaky, 1, k=2) if via == "call" else r(flaky)(1, k=2)
    assert result == "ok"
    assert flaky.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("via", ["acall", "decorator"])
async def test_async_retries_until_success(via: str) -> None:
    clock = FakeClock()
    r = quiet(attempts=5, backoff=NO_JITTER, clock=clock)
    flaky = Flaky(2)
    result = await (r.acall(flaky.acall) if via == "acall" else r(flaky.acall)())
    assert result == "ok"
    assert flaky.calls == 3
    assert clock.sleeps == [1.0, 2.0]


def test_gives_up_after_attempts_with_the_last_exception_and_a_note() -> None:
    r = quiet(attempts=3, backoff=NO_JITTER)
    flaky = Flaky(10, KeyError("gone"))
    with pytest.raises(KeyError) as info:
        r.call(flaky)
    assert flaky.calls == 3
    assert any("gave up after 3 attempt(s)" in note for note in info.value.__notes__)


async def test_async_gives_up_after_attempts() -> None:
    r = quiet(attempts=4, backoff=NO_JITTER)
    flaky = Flaky(10)
    with pytest.raises(ValueError, match="flaky"):
        await r.acall(flaky.acall)
    assert flaky.calls == 4


def test_attempts_one_means_no_retry() -> None:
    flaky = Flaky(1)
    with pytest.raises(ValueError, match="flaky"):
        quiet(attempts=1).call(flaky)
    assert flaky.calls == 1


def test_only_listed_exceptions_are_retried() -> None:
    r = quiet(attempts=5, on=(KeyError,))
    flaky = Flaky(3, ValueError("not listed"))
    with pytest.raises(ValueError, match="not listed"):
        r.call(flaky)
    assert flaky.calls == 1

    class Mixed:
        calls = 0

        def __call__(self) -> str:
            self.calls += 1
            if self.calls == 1:
                raise KeyError("listed")
            raise ValueError("not listed")

    mixed = Mixed()
    with pytest.raises(ValueError, match="not listed"):
        r.call(mixed)
    assert mixed.calls == 2


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_stop_signals_are_never_retried_even_when_listed(error: BaseException) -> None:
    r = quiet(attempts=5, on=(BaseException,))
    flaky = Flaky(3, error)
    with pytest.raises(type(error)):
        r.call(flaky)
    assert flaky.calls == 1
    # ... nor on a later attempt.
    second = Flaky(3)
    seq = iter([ValueError("first"), error])

    def later() -> None:
        second.calls += 1
        raise next(seq)

    with pytest.raises(type(error)):
        r.call(later)
    assert second.calls == 2


async def test_cancelled_error_is_never_retried() -> None:
    r = quiet(attempts=5, on=(BaseException,))
    flaky = Flaky(3, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await r.acall(flaky.acall)
    assert flaky.calls == 1
    assert asyncio.CancelledError in NEVER_RETRIED


async def test_cancellation_during_the_backoff_sleep_propagates() -> None:
    clock = FakeClock(auto_advance=False)
    r = quiet(attempts=5, backoff=NO_JITTER, clock=clock)
    flaky = Flaky(10)
    task = asyncio.create_task(r.acall(flaky.acall))
    for _ in range(100):
        if clock.pending:
            break
        await asyncio.sleep(0)
    assert clock.pending == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flaky.calls == 1


def test_backoff_none_means_zero_sleep_and_tenacity_wait_strategies_work() -> None:
    clock = FakeClock()
    quiet(attempts=3, backoff=None, clock=clock).call(Flaky(2))
    assert clock.sleeps == [0.0, 0.0]  # zero sleeps still yield to an event loop
    clock = FakeClock()
    quiet(attempts=3, backoff=tenacity.wait_fixed(0.5), clock=clock).call(Flaky(2))
    assert clock.sleeps == [0.5, 0.5]
    clock = FakeClock()
    quiet(attempts=3, backoff=lambda rs: 0.25, clock=clock).call(Flaky(2))
    assert clock.sleeps == [0.25, 0.25]


# -- deadline ------------------------------------------------------------------------


def test_deadline_includes_sleep_time() -> None:
    clock = FakeClock()
    r = quiet(attempts=100, backoff=NO_JITTER, deadline=10.0, clock=clock)
    flaky = Flaky(100)
    with pytest.raises(ValueError, match="flaky"):
        r.call(flaky)
    # sleeps 1, 2, 4 (t=7); the next (8) would end at 15 >= 10, so no fourth retry.
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert flaky.calls == 4
    assert clock.monotonic() <= 10.0


def test_deadline_counts_time_spent_in_attempts() -> None:
    clock = FakeClock()
    r = quiet(attempts=100, backoff=NO_JITTER, deadline=10.0, clock=clock)
    calls = 0

    def slow() -> None:
        nonlocal calls
        calls += 1
        clock.advance(3.0)
        raise ValueError("slow")

    with pytest.raises(ValueError, match="slow"):
        r.call(slow)
    # t=3 fail, sleep 1 -> t=4, attempt -> 7 fail, sleep 2 would end at 9 < 10: attempt -> 12.
    assert calls == 3
    assert clock.sleeps == [1.0, 2.0]


async def test_async_deadline() -> None:
    clock = FakeClock()
    r = quiet(attempts=100, backoff=NO_JITTER, deadline=3.5, clock=clock)
    flaky = Flaky(100)
    with pytest.raises(ValueError, match="flaky"):
        await r.acall(flaky.acall)
    assert clock.sleeps == [1.0, 2.0]


# -- Retry-After ---------------------------------------------------------------------


class Throttled(Exception):
    def __init__(self, retry_after: Any) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


class Response:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


class HTTPError(Exception):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("http error")
        self.response = Response(headers)


def test_retry_after_attribute_raises_the_sleep() -> None:
    clock = FakeClock()
    r = quiet(attempts=3, backoff=NO_JITTER, clock=clock)
    r.call(Flaky(2, Throttled(5)))
    assert clock.sleeps == [5.0, 5.0]


def test_retry_after_never_lowers_the_backoff() -> None:
    clock = FakeClock()
    r = quiet(attempts=3, backoff=NO_JITTER, clock=clock)
    r.call(Flaky(2, Throttled(0.1)))
    assert clock.sleeps == [1.0, 2.0]


def test_retry_after_beyond_the_cap_gives_up_at_once() -> None:
    """Never sooner than asked: a wait over max_retry_after ends the retries, it is not cut."""
    clock = FakeClock()
    flaky = Flaky(2, Throttled(1_000_000))
    with pytest.raises(Throttled) as info:
        quiet(attempts=3, backoff=NO_JITTER, clock=clock, max_retry_after=30.0).call(flaky)
    assert flaky.calls == 1
    assert clock.sleeps == []
    assert any("max_retry_after" in note for note in info.value.__notes__)
    clock = FakeClock()
    header = Flaky(1, HTTPError({"Retry-After": "1000000"}))
    with pytest.raises(HTTPError):
        quiet(attempts=2, backoff=NO_JITTER, clock=clock).call(header)
    assert header.calls == 1
    assert clock.sleeps == []


def test_retry_after_at_the_cap_is_honoured() -> None:
    clock = FakeClock()
    r = quiet(attempts=3, backoff=NO_JITTER, clock=clock, max_retry_after=30.0)
    assert r.call(Flaky(2, Throttled(30))) == "ok"
    assert clock.sleeps == [30.0, 30.0]


def _server_asks_ten_hours() -> tuple[Retry, FakeClock, Flaky]:
    """The reported case: Retry-After: 36000 under retry(attempts=3, deadline=120)."""
    clock = FakeClock()
    policy = quiet(attempts=3, deadline=120, respect_retry_after=True, clock=clock)
    return policy, clock, Flaky(2, HTTPError({"Retry-After": "36000"}))


def test_retry_after_of_hours_is_not_retried_after_the_cap_sync() -> None:
    policy, clock, flaky = _server_asks_ten_hours()
    with pytest.raises(HTTPError) as info:
        policy.call(flaky)
    assert flaky.calls == 1  # no second call 60 s later, ten hours early
    assert clock.sleeps == []
    assert clock.monotonic() == 0.0
    assert info.value is flaky.error  # the original error, unchanged


async def test_retry_after_of_hours_is_not_retried_after_the_cap_async() -> None:
    policy, clock, flaky = _server_asks_ten_hours()
    with pytest.raises(HTTPError) as info:
        await policy.acall(flaky.acall)
    assert flaky.calls == 1
    assert clock.sleeps == []
    assert info.value is flaky.error


def test_retry_after_within_cap_but_past_the_remaining_deadline_gives_up() -> None:
    clock = FakeClock()
    durations = iter([70.0, 0.0])

    def slow_then_throttled() -> str:
        clock.advance(next(durations))
        raise Throttled(55)  # 55 <= max_retry_after, but only 50 s of the deadline are left

    with pytest.raises(Throttled) as info:
        quiet(attempts=3, deadline=120, clock=clock).call(slow_then_throttled)
    assert clock.sleeps == []
    assert any("deadline" in note for note in info.value.__notes__)


def test_retry_after_header_seconds_and_http_date() -> None:
    clock = FakeClock()
    quiet(attempts=2, backoff=NO_JITTER, clock=clock).call(
        Flaky(1, HTTPError({"Retry-After": "7"}))
    )
    assert clock.sleeps == [7.0]
    # The clock's time() gives the wall time HTTP dates are measured from.
    clock = FakeClock(start=1_700_000_000.0)  # 2023-11-14T22:13:20Z
    date = "Tue, 14 Nov 2023 22:13:32 GMT"
    quiet(attempts=2, backoff=NO_JITTER, clock=clock).call(
        Flaky(1, HTTPError({"retry-after": date}))
    )
    assert clock.sleeps == [12.0]


def test_respect_retry_after_false_ignores_it() -> None:
    clock = FakeClock()
    r = quiet(attempts=2, backoff=NO_JITTER, respect_retry_after=False, clock=clock)
    r.call(Flaky(1, Throttled(50)))
    assert clock.sleeps == [1.0]


def test_infinite_retry_after_means_give_up() -> None:
    never = Decision(False, 5, 0, math.inf, 0.0)
    flaky = Flaky(3, RateLimited(never, "lim"))
    with pytest.raises(RateLimited):
        quiet(attempts=5).call(flaky)
    assert flaky.calls == 1


def test_retry_after_beyond_the_deadline_gives_up() -> None:
    clock = FakeClock()
    flaky = Flaky(3, Throttled(20))
    with pytest.raises(Throttled):
        quiet(attempts=5, deadline=10.0, clock=clock).call(flaky)
    assert flaky.calls == 1
    assert clock.sleeps == []


# -- attempt 10,000 ------------------------------------------------------------------


def test_attempt_ten_thousand_does_not_overflow() -> None:
    clock = FakeClock()
    r = quiet(attempts=10_001, backoff=Backoff(0.1, 10.0, 2.0, jitter=None), clock=clock)
    flaky = Flaky(10_000)
    assert r.call(flaky) == "ok"
    assert flaky.calls == 10_001
    assert max(clock.sleeps) == 10.0
    assert all(math.isfinite(s) for s in clock.sleeps)


# -- budget --------------------------------------------------------------------------


def test_budget_caps_retries_across_calls() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.3, window=10.0, clock=clock)  # 3 retries
    r = quiet(attempts=5, backoff=None, budget=budget, clock=clock)
    total = 0
    for _ in range(4):
        flaky = Flaky(100)
        with pytest.raises(ValueError, match="flaky"):
            r.call(flaky)
        total += flaky.calls - 1
    assert total == 3


def test_budget_earns_retries_from_requests() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=10.0, clock=clock)
    r = quiet(attempts=2, backoff=None, budget=budget, clock=clock)
    for _ in range(10):
        r.call(lambda: None)  # 10 requests: 5 retries earned
    retried = 0
    for _ in range(10):
        flaky = Flaky(1)
        with contextlib.suppress(ValueError):
            r.call(flaky)
        retried += flaky.calls - 1
    # 20 requests in all by the end; each retry needs retries <= 0.5 * requests.
    assert 5 <= retried <= 10


# -- events and statistics ------------------------------------------------------------


def test_retry_scheduled_events_only_when_someone_listens() -> None:
    seen: list[Event] = []
    r = retry(attempts=3, backoff=NO_JITTER, clock=FakeClock(), events=EventBus([seen.append]))
    r.call(Flaky(2, KeyError("k")))
    assert seen == [
        RetryScheduled("retry", 1, 1.0, "KeyError: 'k'"),
        RetryScheduled("retry", 2, 2.0, "KeyError: 'k'"),
    ]


async def test_each_call_keeps_its_own_state() -> None:
    """Interleaved calls through one policy do not see each other's attempts."""
    clock = FakeClock()
    r = quiet(attempts=4, backoff=NO_JITTER, clock=clock)
    a, b, c = Flaky(3), Flaky(1), Flaky(10)
    results = await asyncio.gather(
        r.acall(a.acall), r.acall(b.acall), r.acall(c.acall), return_exceptions=True
    )
    assert list(results[:2]) == ["ok", "ok"]
    assert isinstance(results[2], ValueError)
    assert (a.calls, b.calls, c.calls) == (4, 2, 4)


def test_budget_and_deadline_use_the_generic_decorator() -> None:
    clock = FakeClock()
    r = quiet(attempts=3, deadline=100.0, budget=RetryBudget(clock=clock), clock=clock)

    @r
    def f(x: int) -> int:
        return x

    assert f(3) == 3
    assert f.__name__ == "f"


# -- retry_if_result: retrying on what a call returned (HTTP statuses) -----------------------


class _Reply:
    """A stand-in for an HTTP response: a status and headers."""

    def __init__(self, status: int, retry_after: str | None = None) -> None:
        self.status = status
        self.headers = {} if retry_after is None else {"Retry-After": retry_after}


def test_retry_if_result_retries_until_a_good_result() -> None:
    from resilience import retry
    from resilience.testing import FakeClock

    clock = FakeClock()
    replies = iter([_Reply(503), _Reply(503, "2"), _Reply(200)])
    policy = retry(attempts=5, backoff=None, clock=clock, retry_if_result=lambda r: r.status >= 500)
    assert policy.call(lambda: next(replies)).status == 200
    assert clock.sleeps == [0.0, 2.0]  # the second 503 asked for 2 s


def test_retry_if_result_out_of_attempts_returns_the_last_result() -> None:
    from resilience import retry
    from resilience.testing import FakeClock

    calls = []

    def fn() -> _Reply:
        calls.append(1)
        return _Reply(503)

    policy = retry(
        attempts=3, backoff=None, clock=FakeClock(), retry_if_result=lambda r: r.status == 503
    )
    assert policy.call(fn).status == 503
    assert len(calls) == 3


async def test_retry_if_result_async_and_decorated() -> None:
    from resilience import retry
    from resilience.testing import FakeClock

    replies = iter([_Reply(429, "1"), _Reply(201)])
    clock = FakeClock()

    @retry(attempts=3, backoff=None, clock=clock, retry_if_result=lambda r: r.status == 429)
    async def fetch() -> _Reply:
        return next(replies)

    assert (await fetch()).status == 201
    assert clock.sleeps == [1.0]
    # a good first result: returned at once, the predicate asked once
    seen = []
    policy = retry(clock=clock, retry_if_result=lambda r: seen.append(r) or False)

    async def ok() -> int:
        return 7

    assert await policy.acall(ok) == 7 and seen == [7]


def test_retry_if_result_still_retries_exceptions_and_validates() -> None:
    from resilience import retry
    from resilience.testing import FakeClock

    outcomes: list[object] = [ValueError("boom"), _Reply(503), _Reply(200)]

    def fn() -> _Reply:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, _Reply)
        return item

    policy = retry(
        attempts=3, backoff=None, clock=FakeClock(), retry_if_result=lambda r: r.status != 200
    )
    assert policy.call(fn).status == 200
    with pytest.raises(ValueError, match="retry_if_result"):
        retry(retry_if_result=42)  # type: ignore[arg-type]


def test_retry_if_result_never_sooner_than_the_reply_asked() -> None:
    """A 503 asking for ten hours is returned at once, not called again after the cap."""
    from resilience import retry
    from resilience.testing import FakeClock

    clock = FakeClock()
    calls = []

    def fn() -> _Reply:
        calls.append(1)
        return _Reply(503, "36000")

    policy = retry(
        attempts=3, deadline=120, clock=clock, retry_if_result=lambda r: r.status == 503
    )
    assert policy.call(fn).headers == {"Retry-After": "36000"}
    assert len(calls) == 1
    assert clock.sleeps == []
