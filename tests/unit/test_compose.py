"""compose: first outermost, nested compositions flatten, sync and async, any Policy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import pytest

from resilience.bulkhead import Bulkhead
from resilience.composition import Composition, compose
from resilience.errors import RateLimited
from resilience.events import EventBus
from resilience.fallbacks import fallback
from resilience.policy import Policy
from resilience.ratelimit import FixedWindow, RateLimiter
from resilience.retrying import Backoff, retry
from resilience.testing import FakeClock
from resilience.timeouts import timeout

P = ParamSpec("P")
R = TypeVar("R")


class Trace(Policy):
    """Records when a call enters and leaves it."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        self.log.append(f"{self.name}>")
        try:
            return fn(*args, **kwargs)
        finally:
            self.log.append(f"<{self.name}")

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        self.log.append(f"{self.name}>")
        try:
            return await fn(*args, **kwargs)
        finally:
            self.log.append(f"<{self.name}")


def test_first_is_outermost_sync() -> None:
    log: list[str] = []
    c = compose(Trace("a", log), Trace("b", log), Trace("c", log))

    def fn(x: int, y: int) -> int:
        log.append("fn")
        return x + y

    assert c.call(fn, 1, y=2) == 3
    assert log == ["a>", "b>", "c>", "fn", "<c", "<b", "<a"]


async def test_first_is_outermost_async() -> None:
    log: list[str] = []
    c = compose(Trace("a", log), Trace("b", log))

    async def fn(x: int) -> int:
        log.append("fn")
        return x

    assert await c.acall(fn, 7) == 7
    assert log == ["a>", "b>", "fn", "<b", "<a"]


def test_nested_compositions_flatten() -> None:
    log: list[str] = []
    a, b, c, d = (Trace(n, log) for n in "abcd")
    nested = compose(a, compose(b, compose(c)), d)
    assert nested.policies == (a, b, c, d)
    assert len(nested) == 4
    assert list(nested) == [a, b, c, d]
    assert nested.name == "compose(a, b, c, d)"
    assert "compose(" in repr(nested)
    nested.call(lambda: None)
    assert log == ["a>", "b>", "c>", "d>", "<d", "<c", "<b", "<a"]


def test_empty_and_single() -> None:
    assert compose().call(lambda: 5) == 5
    log: list[str] = []
    assert compose(Trace("x", log)).call(lambda: 6) == 6
    assert log == ["x>", "<x"]


def test_members_must_be_policies() -> None:
    with pytest.raises(ValueError, match=r"policies\[1\]"):
        compose(Trace("a", []), lambda fn: fn)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        Composition(name="")


def test_is_itself_a_policy_and_a_decorator() -> None:
    log: list[str] = []
    c = compose(Trace("a", log))
    assert isinstance(c, Policy)

    @c
    def f(x: int) -> int:
        """Doc."""
        return x * 3

    assert f(2) == 6
    assert f.__name__ == "f"
    assert f.__doc__ == "Doc."


async def test_async_decorator() -> None:
    log: list[str] = []

    @compose(Trace("a", log), Trace("b", log))
    async def f() -> str:
        return "ok"

    assert await f() == "ok"
    assert log == ["a>", "b>", "<b", "<a"]


def test_retry_reruns_every_inner_layer_on_each_attempt() -> None:
    log: list[str] = []
    clock = FakeClock()
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ValueError("again")
        return "ok"

    r = retry(attempts=3, backoff=None, clock=clock, events=EventBus())
    c = compose(Trace("outer", log), r, Trace("inner", log))
    assert c.call(flaky) == "ok"
    assert log == ["outer>"] + ["inner>", "<inner"] * 3 + ["<outer"]


def test_rate_limiter_is_a_member() -> None:
    clock = FakeClock()
    limiter = RateLimiter(FixedWindow(2, 60), clock=clock, events=EventBus())
    c = compose(fallback("limited", on=RateLimited), limiter)
    assert [c.call(lambda: "ran") for _ in range(3)] == ["ran", "ran", "limited"]


async def test_rate_limiter_is_a_member_async() -> None:
    limiter = RateLimiter(FixedWindow(1, 60), clock=FakeClock(), events=EventBus())

    async def fn() -> str:
        return "ran"

    c = compose(limiter)
    assert await c.acall(fn) == "ran"
    with pytest.raises(RateLimited):
        await c.acall(fn)


def test_full_stack_sync() -> None:
    clock = FakeClock()
    stack = compose(
        fallback("degraded"),
        timeout(100, clock=clock),
        retry(attempts=3, backoff=Backoff(1, 10, 2, jitter=None), clock=clock, events=EventBus()),
        Bulkhead("db", max_concurrent=1, events=EventBus()),
        RateLimiter(FixedWindow(10, 60), clock=clock, events=EventBus()),
    )
    attempts = 0

    def always_fails() -> Any:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    assert stack.call(always_fails) == "degraded"
    assert attempts == 3
    assert clock.sleeps == [1.0, 2.0]
    assert stack.call(lambda: "up") == "up"


async def test_full_stack_async_timeout_inside_retry() -> None:
    clock = FakeClock()
    attempts = 0

    async def hangs_then_answers() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            await asyncio.Event().wait()
        return "answered"

    stack = compose(
        retry(attempts=3, on=TimeoutError, backoff=None, clock=clock, events=EventBus()),
        timeout(0.01),
        Bulkhead("svc", max_concurrent=2, events=EventBus()),
    )
    assert await stack.acall(hangs_then_answers) == "answered"
    assert attempts == 3
    bulkhead = stack.policies[2]
    assert isinstance(bulkhead, Bulkhead)
    assert bulkhead.active == 0
