"""``fallback``: answer with a default when a call fails.

Degrading (a cached page, an empty list, "service busy") often serves users
better than an error.  ``fallback`` catches the listed exception types and
returns a value, or the result of calling a handler with the exception.
``CancelledError``, ``KeyboardInterrupt``, ``SystemExit`` and
``GeneratorExit`` are never caught: a fallback must not turn "stop" into an
answer.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from resilience import _validate
from resilience.policy import Policy
from resilience.retrying.retry import NEVER_RETRIED, exception_types

__all__ = ["Fallback", "fallback"]

P = ParamSpec("P")
R = TypeVar("R")


class Fallback(Policy):
    """Return a fallback when the call raises one of ``on``; see :func:`fallback`."""

    __slots__ = ("_handler", "_on", "name", "on", "value")

    def __init__(
        self,
        value_or_callable: Any,
        on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        *,
        name: str = "fallback",
    ) -> None:
        _validate.non_empty_str(name, "name")
        self.value = value_or_callable
        self.on = exception_types(on)
        self._on = self.on
        self._handler: Callable[[BaseException], Any] | None = (
            value_or_callable if callable(value_or_callable) else None
        )
        self.name = name

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except self._on as exc:
            if isinstance(exc, NEVER_RETRIED):
                raise
            if self._handler is None:
                return cast(R, self.value)
            return cast(R, self._handler(exc))

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except self._on as exc:
            if isinstance(exc, NEVER_RETRIED):
                raise
            if self._handler is None:
                return cast(R, self.value)
            answer = self._handler(exc)
            if inspect.isawaitable(answer):
                answer = await answer
            return cast(R, answer)

    def __repr__(self) -> str:
        return f"Fallback({self.value!r}, on={self.on!r})"


def fallback(
    value_or_callable: Any,
    on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    *,
    name: str = "fallback",
) -> Fallback:
    """A policy that answers with ``value_or_callable`` when the call raises one of ``on``.

    A callable is called with the exception and its result is returned (in
    ``acall`` it may also be a coroutine function).  To return a callable as
    the value itself, wrap it: ``fallback(lambda exc: my_function)``.
    """
    return Fallback(value_or_callable, on, name=name)
