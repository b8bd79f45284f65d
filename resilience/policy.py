"""What every policy shares: the decorator plumbing and one sync/async driver.

A policy's slow path is written once, as a generator of *steps*: it yields a
number of seconds to sleep, :data:`CALL` to run the protected function, or an
:class:`Io` step to run a store operation (the sync driver calls its sync
method, the async driver awaits its async one); the driver sends back the
result or throws the exception into the generator.  :func:`drive_sync` and
:func:`drive_async` are the only two loops, so there are no hand-copied
sync/async twins.  Because exceptions (including
``CancelledError`` during a sleep) are thrown into the generator, a policy
releases what it holds in an ordinary ``try/finally``.

Fast paths (the first attempt succeeds, the breaker is closed, the limiter
admits) are written directly in ``call``/``acall`` and never create a
generator.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Final, ParamSpec, TypeVar, cast, overload

from resilience.clock import Clock, sleep_async, sleep_sync

__all__ = [
    "CALL",
    "Io",
    "Policy",
    "Steps",
    "decorate",
    "drive_async",
    "drive_sync",
    "is_async_callable",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _Call:
    __slots__ = ()

    def __repr__(self) -> str:
        return "CALL"


CALL: Final = _Call()
"""Yielded by a step generator to ask the driver to run the protected call."""


class Io:
    """A step that runs one store (or network) operation.

    ``sync(*args)`` runs under :func:`drive_sync`; under :func:`drive_async`
    the driver awaits ``async_(*args)``, or calls ``sync(*args)`` when there is
    no async form (a local, non-blocking store).  The policy's generator is
    written once and never knows which driver runs it.
    """

    __slots__ = ("args", "async_", "sync")

    def __init__(
        self,
        sync: Callable[..., Any],
        async_: Callable[..., Awaitable[Any]] | None = None,
        *args: Any,
    ) -> None:
        self.sync = sync
        self.async_ = async_
        self.args = args

    def __repr__(self) -> str:
        name = getattr(self.sync, "__qualname__", repr(self.sync))
        return f"Io({name})"


Steps = Generator["float | _Call | Io", Any, T]
"""A policy's slow path: yields sleeps (seconds), CALL or Io; returns the result."""


def drive_sync(
    steps: Steps[T],
    clock: Clock,
    fn: Callable[..., Any] | None = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> T:
    """Run ``steps`` to completion, sleeping on ``clock`` and calling ``fn``."""
    kw = kwargs or {}
    try:
        action = next(steps)
        while True:
            try:
                if action is CALL:
                    if fn is None:
                        raise RuntimeError("steps asked for a call but no function was given")
                    sent: Any = fn(*args, **kw)
                elif type(action) is Io:
                    sent = action.sync(*action.args)
                else:
                    sleep_sync(clock, cast(float, action))
                    sent = None
            except BaseException as exc:  # thrown into the policy, which decides
                action = steps.throw(exc)
            else:
                action = steps.send(sent)
    except StopIteration as stop:
        return cast(T, stop.value)
    finally:
        steps.close()


async def drive_async(
    steps: Steps[T],
    clock: Clock,
    fn: Callable[..., Awaitable[Any]] | None = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> T:
    """The async twin of :func:`drive_sync`: the same steps, awaited."""
    kw = kwargs or {}
    try:
        action = next(steps)
        while True:
            try:
                if action is CALL:
                    if fn is None:
                        raise RuntimeError("steps asked for a call but no function was given")
                    sent: Any = await fn(*args, **kw)
                elif type(action) is Io:
                    if action.async_ is None:
                        sent = action.sync(*action.args)
                    else:
                        sent = await action.async_(*action.args)
                else:
                    await sleep_async(clock, cast(float, action))
                    sent = None
            except BaseException as exc:
                action = steps.throw(exc)
            else:
                action = steps.send(sent)
    except StopIteration as stop:
        return cast(T, stop.value)
    finally:
        steps.close()


def is_async_callable(fn: object) -> bool:
    """True for coroutine functions, including ones behind partial or __call__."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we want the method, not callable()
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def decorate(policy: Policy, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` so each call runs through ``policy``; keeps name, doc and signature."""
    if is_async_callable(fn):
        acall = policy.acall

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await acall(fn, *args, **kwargs)

        async_wrapper.__resilience_policy__ = policy  # type: ignore[attr-defined]
        return async_wrapper

    call = policy.call

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(fn, *args, **kwargs)

    wrapper.__resilience_policy__ = policy  # type: ignore[attr-defined]
    return wrapper


class Policy(ABC):
    """A resilience policy: something that runs a call under protection.

    Subclasses implement :meth:`call` and :meth:`acall`; using the policy as a
    decorator (``@policy``) picks the right one for sync or async functions.
    """

    __slots__ = ()
    name: str

    @abstractmethod
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` under this policy."""

    @abstractmethod
    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` under this policy."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return decorate(self, fn)
