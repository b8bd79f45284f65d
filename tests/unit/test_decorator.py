"""@rate_limit on functions, coroutine functions and methods."""

from __future__ import annotations

import inspect

import pytest

from resilience import FixedWindow, LeakyBucket, RateLimited, RateLimiter, TokenBucket, rate_limit
from resilience.events import EventBus
from resilience.testing import FakeClock


def make(limit: int = 2, period: float = 1.0, clock: FakeClock | None = None) -> RateLimiter:
    return RateLimiter(FixedWindow(limit, period), clock=clock or FakeClock(), events=EventBus())


def test_sync_function_keeps_metadata_and_signature() -> None:
    limiter = make()

    @rate_limit(limiter)
    def greet(name: str, *, punctuation: str = "!") -> str:
        """Say hello."""
        return f"hello {name}{punctuation}"

    assert greet.__name__ == "greet"
    assert greet.__doc__ == "Say hello."
    assert inspect.signature(greet) == inspect.signature(greet.__wrapped__)  # type: ignore[attr-defined]
    assert list(inspect.signature(greet).parameters) == ["name", "punctuation"]
    assert greet("a") == "hello a!"
    assert greet("b", punctuation="?") == "hello b?"
    with pytest.raises(RateLimited) as info:
        greet("c")
    assert info.value.retry_after == pytest.approx(1.0)


async def test_async_function() -> None:
    limiter = make(limit=1)

    @rate_limit(limiter)
    async def fetch(x: int) -> int:
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch(2) == 4
    with pytest.raises(RateLimited):
        await fetch(3)


def test_key_and_cost_from_arguments() -> None:
    limiter = make(limit=3)

    @rate_limit(limiter, key=lambda user, size: user, cost=lambda user, size: size)
    def upload(user: str, size: int) -> str:
        return user

    assert upload("ann", 3) == "ann"
    assert upload("bob", 1) == "bob"
    with pytest.raises(RateLimited):
        upload("ann", 1)
    assert upload("bob", 2) == "bob"


def test_methods_share_the_limiter_per_key() -> None:
    limiter = make(limit=1)

    class Client:
        def __init__(self, name: str) -> None:
            self.name = name

        @rate_limit(limiter, key=lambda self: self.name)
        def ping(self) -> str:
            return self.name

    assert Client("a").ping() == "a"
    assert Client("b").ping() == "b"
    with pytest.raises(RateLimited):
        Client("a").ping()


def test_wait_true_waits_up_to_timeout() -> None:
    clock = FakeClock()
    limiter = make(limit=1, period=2.0, clock=clock)

    @rate_limit(limiter, wait=True, timeout=5.0)
    def work() -> float:
        return clock.monotonic()

    assert work() == 0.0
    assert work() == pytest.approx(2.0)
    strict = rate_limit(limiter, wait=True, timeout=0.5)(lambda: None)
    with pytest.raises(RateLimited):
        strict()


async def test_async_wait_and_shape() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        LeakyBucket(4, 1.0, capacity=8, mode="shape"), clock=clock, events=EventBus()
    )

    @rate_limit(limiter)
    async def send() -> float:
        return clock.monotonic()

    times = [await send() for _ in range(4)]
    assert times == pytest.approx([0.0, 0.25, 0.5, 0.75])

    waiting = RateLimiter(TokenBucket(1, 1.0), clock=clock, events=EventBus())

    @rate_limit(waiting, wait=True)
    async def slow() -> float:
        return clock.monotonic()

    first = await slow()
    assert await slow() == pytest.approx(first + 1.0)


def test_bad_key_option() -> None:
    with pytest.raises(ValueError, match="key"):
        rate_limit(make(), key=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limiter"):
        rate_limit("limiter")  # type: ignore[arg-type]
