"""``retry``: tenacity's engine behind a fast first attempt.

The first attempt runs directly in ``call``/``acall``: when it succeeds (the
common case) no tenacity object, generator or clock reading is created.
Only after a retryable failure does the policy build a fresh tenacity
``Retrying`` (a ``copy()`` of a template, so each call keeps its own
statistics) and walk it with tenacity's own protocol: ``iter(state)`` answers
``DoSleep(seconds)`` or the final result, and raises when it gives up.  That
walk is a step generator run by the shared driver, so the sync and async
slow paths are one loop, and sleeping goes through the injected clock.

Everything tenacity decides with is a tenacity strategy object: the stop
(``stop_after_attempt | stop_before_delay | never-wait | budget``), the wait
(:class:`Backoff`, raised to a Retry-After when asked) and the retry
predicate.  The deadline includes sleep time: a retry whose sleep would end
at or after the deadline is not attempted.
"""

from __future__ import annotations

import asyncio
import functools
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, cast

import tenacity
from tenacity.retry import retry_base, retry_if_exception, retry_if_result
from tenacity.stop import stop_after_attempt, stop_any, stop_base, stop_before_delay
from tenacity.wait import WaitBaseT, wait_base, wait_none

from resilience import _validate
from resilience.clock import Clock, now_function, resolve_clock
from resilience.events import EventBus, RetryScheduled, default_bus
from resilience.policy import (
    CALL,
    Policy,
    Steps,
    decorate,
    drive_async,
    drive_sync,
    is_async_callable,
)
from resilience.retrying.backoff import Backoff
from resilience.retrying.budget import RetryBudget
from resilience.retrying.retry_after import retry_after_of

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["NEVER_RETRIED", "Retry", "retry"]

P = ParamSpec("P")
R = TypeVar("R")

NEVER_RETRIED: Final = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)
"""Never retried (nor swallowed by fallback), whatever ``on`` says: they mean "stop"."""

DEFAULT_BACKOFF: Final = Backoff(initial=0.1, maximum=10.0, multiplier=2.0, jitter="full")


class _RetryAfterWait(wait_base):
    """The backoff delay, raised to what the failure asked for.

    Never sooner than asked: a wait longer than ``max_retry_after`` is not cut
    down to the cap (that would call back hours early, into a server that said
    it is down for hours), it is infinite, so ``_stop_never_ready`` gives up at
    once: the original error propagates (retrying on a result, that result
    is returned).
    """

    def __init__(
        self, backoff: wait_base, max_retry_after: float, wall_time: Callable[[], float]
    ) -> None:
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.wall_time = wall_time

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = float(self.backoff(retry_state))
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if exc is None and outcome is not None:  # retried on a result: an HTTP response's header
            exc = cast(BaseException, outcome.result())
        if exc is not None:
            asked = retry_after_of(exc, self.wall_time)
            if asked is not None:
                if asked > self.max_retry_after:  # math.inf ("never") included
                    return math.inf
                delay = max(delay, asked)
        return delay


class _stop_never_ready(stop_base):  # tenacity's naming
    """Give up when the wait is infinite (a cost that can never fit)."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.upcoming_sleep == math.inf


class _stop_budget_spent(stop_base):  # tenacity's naming
    """Give up when the shared budget refuses.  Checked last: it spends a token."""

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return not self.budget.try_spend()


class _CallState(tenacity.RetryCallState):
    """tenacity's per-call state, timed by the injected clock instead of time.monotonic."""

    def __init__(self, engine: tenacity.Retrying, now: Callable[[], float], start: float) -> None:
        super().__init__(engine, None, (), {})
        self._now = now
        self.start_time = start

    def set_result(self, val: Any) -> None:
        super().set_result(val)
        self.outcome_timestamp = self._now()

    def set_exception(
        self, exc_info: tuple[type[BaseException], BaseException, TracebackType | None]
    ) -> None:
        super().set_exception(exc_info)
        self.outcome_timestamp = self._now()


def exception_types(on: object) -> tuple[type[BaseException], ...]:
    """``on=``: an exception class or a non-empty tuple of them."""
    return _validate.exception_types(on, "on")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name


class Retry(Policy):
    """Run a call again after a retryable failure, with backoff; see :func:`retry`."""

    __slots__ = (
        "_budget",
        "_clock",
        "_engine",
        "_events",
        "_needs_start",
        "_now",
        "_on",
        "_wall_time",
        "attempts",
        "backoff",
        "budget",
        "deadline",
        "max_retry_after",
        "name",
        "on",
        "respect_retry_after",
        "retry_if_result",
    )

    def __init__(
        self,
        *,
        attempts: int = 3,
        on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        backoff: WaitBaseT | None = DEFAULT_BACKOFF,
        deadline: float | None = None,
        budget: RetryBudget | None = None,
        respect_retry_after: bool = True,
        max_retry_after: float = 60.0,
        clock: Clock | None = None,
        name: str = "retry",
        events: EventBus | None = None,
        retry_if_result: Callable[[Any], bool] | None = None,
    ) -> None:
        self.retry_if_result = _validate.callable_or_none(retry_if_result, "retry_if_result")
        _validate.whole_number(attempts, "attempts")
        if backoff is not None and not callable(backoff):
            raise ValueError(
                f"backoff must be a Backoff or a tenacity wait strategy, got {backoff!r}"
            )
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"budget must be a RetryBudget or None, got {budget!r}")
        _validate.non_empty_str(name, "name")
        self.attempts = attempts
        self.on = exception_types(on)
        self.backoff = backoff
        self.deadline = _validate.optional_seconds(deadline, "deadline", positive=True)
        self.budget = budget
        self.respect_retry_after = bool(respect_retry_after)
        cap = _validate.optional_seconds(max_retry_after, "max_retry_after")
        if cap is None or cap == math.inf:
            raise ValueError(f"max_retry_after must be a finite number, got {max_retry_after!r}")
        self.max_retry_after = cap
        self.name = name
        self._clock = resolve_clock(clock)
        self._now = now_function(self._clock)
        self._events = default_bus if events is None else events
        self._on = self.on
        self._budget = budget
        self._needs_start = self.deadline is not None
        wall = getattr(self._clock, "time", None)
        self._wall_time: Callable[[], float] = wall if callable(wall) else time.time
        self._engine = self._build_engine()

    def _build_engine(self) -> tenacity.Retrying:
        """The template every failing call copies: only tenacity strategy objects."""
        stops: list[stop_base] = [stop_after_attempt(self.attempts)]
        if self.deadline is not None:
            stops.append(stop_before_delay(self.deadline))
        stops.append(_stop_never_ready())
        if self.budget is not None:
            stops.append(_stop_budget_spent(self.budget))  # last: it spends a token
        wait: wait_base = wait_none() if self.backoff is None else _as_wait(self.backoff)
        if self.respect_retry_after:
            wait = _RetryAfterWait(wait, self.max_retry_after, self._wall_time)
        never = NEVER_RETRIED
        on = self.on

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, on) and not isinstance(exc, never)

        predicate: retry_base = retry_if_exception(retryable)
        if self.retry_if_result is not None:
            predicate = predicate | retry_if_result(self.retry_if_result)
        return tenacity.Retrying(
            stop=stop_any(*stops),
            wait=wait,
            retry=predicate,
            reraise=True,
            retry_error_callback=_last_result,  # out of retries on a result: return it
        )

    # -- fast paths -------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn``; after a retryable failure, retry under tenacity's engine."""
        if self._budget is not None:
            self._budget.deposit()
        start = self._now() if self._needs_start or self.retry_if_result else 0.0
        try:
            result = fn(*args, **kwargs)
        except self._on as exc:
            if isinstance(exc, NEVER_RETRIED):
                raise
            steps = self._steps(exc, start)
        else:
            if self.retry_if_result is None or not self.retry_if_result(result):
                return result
            steps = self._steps(None, start, result)
        return cast(R, drive_sync(steps, self._clock, fn, args, kwargs))

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn``; after a retryable failure, retry (sleeping on the clock)."""
        if self._budget is not None:
            self._budget.deposit()
        start = self._now() if self._needs_start or self.retry_if_result else 0.0
        try:
            result = await fn(*args, **kwargs)
        except self._on as exc:
            if isinstance(exc, NEVER_RETRIED):
                raise
            steps = self._steps(exc, start)
        else:
            if self.retry_if_result is None or not self.retry_if_result(result):
                return result
            steps = self._steps(None, start, result)
        return cast(R, await drive_async(steps, self._clock, fn, args, kwargs))

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate ``fn``.  Without budget or deadline the wrapper inlines the first try."""
        if self._budget is not None or self._needs_start or self.retry_if_result is not None:
            return decorate(self, fn)
        on = self._on
        clock = self._clock
        steps = self._steps
        if is_async_callable(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fn(*args, **kwargs)
                except on as exc:
                    if isinstance(exc, NEVER_RETRIED):
                        raise
                    slow = steps(exc, 0.0)
                return await drive_async(slow, clock, fn, args, kwargs)

            async_wrapper.__resilience_policy__ = self  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except on as exc:
                if isinstance(exc, NEVER_RETRIED):
                    raise
                slow = steps(exc, 0.0)
            return drive_sync(slow, clock, fn, args, kwargs)

        wrapper.__resilience_policy__ = self  # type: ignore[attr-defined]
        return wrapper

    # -- the slow path: tenacity's iter protocol as driver steps -----------------

    def _steps(self, first: BaseException | None, start: float, result: Any = None) -> Steps[Any]:
        engine = self._engine.copy()  # per call: its own statistics and iter state
        engine.begin()
        timed = self._needs_start or self.retry_if_result is not None
        state = _CallState(engine, self._now, start if timed else self._now())
        if first is None:
            state.set_result(result)  # retry_if_result asked for another attempt
        else:
            state.set_exception((type(first), first, first.__traceback__))
        del first, result
        events = self._events
        while True:
            try:
                action = engine.iter(state)
            except BaseException as exc:
                if engine.iter_state.stop_run_result:
                    exc.add_note(
                        f"{self.name}: gave up after {state.attempt_number} attempt(s), "
                        f"{state.idle_for:.3f}s asleep{self._why_not_later(exc, state)}"
                    )
                raise
            if not isinstance(action, tenacity.DoSleep):
                return action  # a success: tenacity hands back the result
            delay = float(action)
            if events.wants(RetryScheduled):
                failed = state.outcome.exception() if state.outcome is not None else None
                error = _describe(failed) if failed is not None else "result"
                events.emit(RetryScheduled(self.name, state.attempt_number, delay, error))
            state.prepare_for_next_attempt()
            yield delay  # even 0: an async retry loop must let the event loop run
            try:
                result = yield CALL
            except NEVER_RETRIED:
                raise
            except BaseException:
                state.set_exception(sys.exc_info())  # type: ignore[arg-type]
            else:
                state.set_result(result)

    def _why_not_later(self, exc: BaseException, state: tenacity.RetryCallState) -> str:
        """Why a failure that asked for a wait was not retried after it (for the note)."""
        if not self.respect_retry_after:
            return ""
        asked = retry_after_of(exc, self._wall_time)
        if asked is None:
            return ""
        if asked > self.max_retry_after:
            return (
                f"; it asked to retry after {asked:g}s, more than "
                f"max_retry_after={self.max_retry_after:g}s (a retry is never sooner than asked)"
            )
        elapsed = state.seconds_since_start
        if self.deadline is not None and elapsed is not None:
            left = self.deadline - elapsed
            if asked >= left:
                return (
                    f"; it asked to retry after {asked:g}s, "
                    f"past the deadline ({max(left, 0.0):.3f}s left)"
                )
        return ""

    def __repr__(self) -> str:
        return (
            f"Retry(attempts={self.attempts!r}, on={self.on!r}, backoff={self.backoff!r}, "
            f"deadline={self.deadline!r}, budget={self.budget!r}, name={self.name!r})"
        )


def _last_result(retry_state: tenacity.RetryCallState) -> Any:
    """Out of attempts: the last result, or the last exception raised again."""
    assert retry_state.outcome is not None
    return retry_state.outcome.result()


def _as_wait(backoff: Callable[..., Any]) -> wait_base:
    if isinstance(backoff, wait_base):
        return backoff

    class _Wrapped(wait_base):
        def __call__(self, retry_state: tenacity.RetryCallState) -> float:
            return float(backoff(retry_state))

    return _Wrapped()


def retry(
    *,
    attempts: int = 3,
    on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
    backoff: WaitBaseT | None = DEFAULT_BACKOFF,
    deadline: float | None = None,
    budget: RetryBudget | None = None,
    respect_retry_after: bool = True,
    max_retry_after: float = 60.0,
    clock: Clock | None = None,
    name: str = "retry",
    events: EventBus | None = None,
    retry_if_result: Callable[[Any], bool] | None = None,
) -> Retry:
    """A retry policy: ``@retry(...)``, ``.call(fn, ...)`` or ``await .acall(fn, ...)``.

    ``attempts`` counts the first try.  ``on`` lists the exception types worth
    retrying (``CancelledError``, ``KeyboardInterrupt``, ``SystemExit`` and
    ``GeneratorExit`` never are).  ``backoff`` is a :class:`Backoff` or any
    tenacity wait strategy (``None``: no sleep).  ``deadline`` bounds the whole
    call, sleeps included, from the first attempt's start.  ``budget`` is a
    :class:`RetryBudget` shared with other policies.  With
    ``respect_retry_after`` a failure's ``retry_after`` (or its HTTP
    ``Retry-After`` header) raises the sleep: a retry is never sooner than
    asked.  A wait longer than ``max_retry_after`` (or ``math.inf``), or one
    that would end past the ``deadline``, ends the retries at once.  On giving
    up the last exception is re-raised with a note saying how many attempts
    were made and, when a requested wait stopped them, why.
    ``retry_if_result(result) -> bool`` also retries a call that *returned*
    something unwanted (an HTTP 503, say; its ``Retry-After`` header is
    honoured like an exception's, and a wait too long for the cap or the
    deadline returns that result at once); out of attempts, the last result
    is returned.
    """
    return Retry(
        attempts=attempts,
        on=on,
        backoff=backoff,
        deadline=deadline,
        budget=budget,
        respect_retry_after=respect_retry_after,
        max_retry_after=max_retry_after,
        clock=clock,
        name=name,
        events=events,
        retry_if_result=retry_if_result,
    )
