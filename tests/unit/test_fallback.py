"""fallback: a value or a handler's answer instead of an error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resilience.fallbacks import Fallback, fallback
from resilience.policy import Policy


def boom(*args: Any, **kwargs: Any) -> Any:
    raise ValueError("boom")


async def aboom(*args: Any, **kwargs: Any) -> Any:
    raise ValueError("boom")


def test_value_on_failure_and_result_on_success() -> None:
    f = fallback("default")
    assert isinstance(f, Fallback)
    assert isinstance(f, Policy)
    assert f.call(boom) == "default"
    assert f.call(lambda x: x, 3) == 3
    assert "default" in repr(f)


def test_callable_gets_the_exception() -> None:
    f = fallback(lambda exc: f"saw {exc}")
    assert f.call(boom) == "saw boom"


def test_only_listed_exceptions() -> None:
    f = fallback(0, on=KeyError)
    with pytest.raises(ValueError, match="boom"):
        f.call(boom)


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_stop_signals_pass_through_even_when_listed(error: type[BaseException]) -> None:
    def stop() -> None:
        raise error()

    with pytest.raises(error):
        fallback(0, on=BaseException).call(stop)


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="on"):
        fallback(0, on=())
    with pytest.raises(ValueError, match="name"):
        fallback(0, name="")


async def test_async_value_sync_handler_and_async_handler() -> None:
    assert await fallback([]).acall(aboom) == []
    assert await fallback(lambda exc: type(exc).__name__).acall(aboom) == "ValueError"

    async def handler(exc: BaseException) -> str:
        await asyncio.sleep(0)
        return "async"

    assert await fallback(handler).acall(aboom) == "async"


async def test_async_cancellation_passes_through() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await fallback(0, on=BaseException).acall(cancelled)


async def test_decorators() -> None:
    @fallback("sync")
    def s() -> str:
        raise RuntimeError

    @fallback("async")
    async def a() -> str:
        raise RuntimeError

    assert s() == "sync"
    assert await a() == "async"
