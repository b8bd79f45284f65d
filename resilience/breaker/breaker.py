"""``CircuitBreaker``: permission, call, record, with no lock held during the call.

Resilience4j's shape: ask the state store for a permit, run the protected
call outside any lock, then report its outcome with that permit.  The state
store (in memory by default, shared when ``store=`` is given) owns every
transition; this class classifies outcomes, times calls when it must, raises
:class:`~resilience.errors.CircuitOpen` and emits
:class:`~resilience.events.CircuitStateChanged`.

The closed hot path reads one attribute (``table.closed``), makes the call,
and counts a success with one lock-free ``next()``; it reads no clock unless
slow calls or a time window need one and builds nothing when no sink listens.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from resilience.breaker.config import BreakerConfig, check_exceptions, check_predicate
from resilience.breaker.memory import MemoryBreakerStore
from resilience.breaker.outcome import CANCELLED, FAILED, RELEASE, SUCCEEDED, Classifier
from resilience.breaker.state import BreakerSnapshot, CircuitState, Permit, Transition
from resilience.breaker.store import BreakerStore, BreakerTable
from resilience.breaker.windows import CountWindow, Window
from resilience.clock import Clock, now_function, resolve_clock
from resilience.errors import CircuitOpen
from resilience.events import CircuitStateChanged, EventBus, default_bus
from resilience.policy import Policy, is_async_callable

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
R = TypeVar("R")

HALF_OPEN = CircuitState.HALF_OPEN
_DEFAULT_WINDOW = CountWindow(100)


class _CircuitOpen(CircuitOpen):
    """``CircuitOpen`` built by C code alone, its message formatted only when read.

    Raising is the open circuit's hot path; the parent's Python ``__init__``
    and message formatting cost more than the raise itself.  The fields live
    in ``args`` (``(name, retry_after)``), so it pickles like its parent.
    """

    __init__ = BaseException.__init__

    @property
    def name(self) -> str:
        return str(self.args[0])

    @name.setter
    def name(self, value: str) -> None:
        self.args = (value, *self.args[1:])

    @property
    def retry_after(self) -> float:
        return float(self.args[1])

    @retry_after.setter
    def retry_after(self, value: float) -> None:
        self.args = (self.args[0], value)

    def __str__(self) -> str:
        return f"circuit {self.name!r} is open; retry after {self.retry_after:.3f}s"


class CircuitBreaker(Policy):
    """Stop calling a dependency that keeps failing; probe it again after a pause.

    Closed: calls pass and their outcomes fill ``window``.  The circuit opens
    when ``consecutive_failures`` failures happen in a row, or, once the
    window holds ``minimum_calls`` calls, when the failure rate reaches
    ``failure_rate_threshold`` or (with ``slow_call_duration``) the rate of
    calls slower than it reaches ``slow_call_rate_threshold``.  Open: calls
    raise ``CircuitOpen`` for ``open_duration`` seconds.  Half-open: exactly
    ``half_open_max_calls`` probes run; one failure reopens, all succeeding
    closes.

    ``record`` / ``ignore`` pick which exceptions are failures (ignored ones
    count as nothing, other exceptions as successes); ``failure_if(result)``
    marks a returned value as a failure.  Cancellation, ``KeyboardInterrupt``,
    ``SystemExit`` and ``GeneratorExit`` never count as failures in closed
    state; a cancelled half-open probe frees its slot and counts as failed.
    """

    __slots__ = (
        "_classifier",
        "_events",
        "_failure_if",
        "_local",
        "_now",
        "_table",
        "_timed",
        "clock",
        "config",
        "name",
        "store",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_rate_threshold: float | None = 0.5,
        minimum_calls: int = 10,
        window: Window = _DEFAULT_WINDOW,
        consecutive_failures: int | None = None,
        slow_call_duration: float | None = None,
        slow_call_rate_threshold: float = 1.0,
        open_duration: float = 30.0,
        half_open_max_calls: int = 1,
        record: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
        failure_if: Callable[[Any], bool] | None = None,
        clock: Clock | None = None,
        store: BreakerStore | None = None,
        events: EventBus | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.config = BreakerConfig.build(
            failure_rate_threshold=failure_rate_threshold,
            minimum_calls=minimum_calls,
            window=window,
            consecutive_failures=consecutive_failures,
            slow_call_duration=slow_call_duration,
            slow_call_rate_threshold=slow_call_rate_threshold,
            open_duration=open_duration,
            half_open_max_calls=half_open_max_calls,
        )
        self._classifier = Classifier(
            check_exceptions(record, "record"),
            check_exceptions(ignore, "ignore"),
            check_predicate(failure_if, "failure_if"),
        )
        self._failure_if = self._classifier.failure_if
        if clock is not None and not callable(getattr(clock, "monotonic", None)):
            raise ValueError(f"clock must have a monotonic() method, got {clock!r}")
        if events is not None and not isinstance(events, EventBus):
            raise ValueError(f"events must be an EventBus, got {events!r}")
        if store is not None and not callable(getattr(store, "breaker_table", None)):
            raise ValueError(
                f"store must be able to hold breaker state (breaker_table), got {store!r}"
            )
        self.name = name
        self.clock = resolve_clock(clock)
        self._now = now_function(self.clock)
        self._events = default_bus if events is None else events
        self.store: BreakerStore = MemoryBreakerStore() if store is None else store
        self._table: BreakerTable = self.store.breaker_table(name, self.config, self._now)
        self._local = bool(self._table.local)
        self._timed = self.config.slow_call_duration is not None

    # -- as a policy ------------------------------------------------------------------

    # The closed fast path is written out in call, acall and both decorator wrappers:
    # one more Python call would add a fifth to its cost.

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` if the circuit lets it; raise ``CircuitOpen`` if not."""
        fast = self._table.closed
        if fast is None:
            return self._call_guarded(fn, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(fast.permit, self._classifier.error(exc), 0.0)
            raise
        if self._failure_if is not None:
            return self._finish(fast.permit, result, 0.0)
        transition = fast.success()
        if transition is not None:
            self._emit(transition)
        return result

    def _call_guarded(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        start = self._now()
        permit = self._table.acquire(start)
        if not permit.allowed:
            raise self._rejected(permit)
        if permit.transition is not None:
            self._emit(permit.transition)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(permit, self._classifier.error(exc), start)
            raise
        if self._failure_if is not None:
            return self._finish(permit, result, start)
        end = self._now()
        transition = self._table.record(permit, False, end - start if self._timed else 0.0, end)
        if transition is not None:
            self._emit(transition)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn`` if the circuit lets it; raise ``CircuitOpen`` if not."""
        fast = self._table.closed
        if fast is None:
            return await self._acall_guarded(fn, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(fast.permit, self._classifier.error(exc), 0.0)
            raise
        if self._failure_if is not None:
            return self._finish(fast.permit, result, 0.0)
        transition = fast.success()
        if transition is not None:
            self._emit(transition)
        return result

    async def _acall_guarded(self, fn: Callable[..., Awaitable[R]], args: Any, kwargs: Any) -> R:
        if self._local:  # the in-memory table never blocks: no extra awaits
            start = self._now()
            permit = self._table.acquire(start)
            if not permit.allowed:
                raise self._rejected(permit)
            if permit.transition is not None:
                self._emit(permit.transition)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._settle(permit, self._classifier.error(exc), start)
                raise
            if self._failure_if is not None:
                return self._finish(permit, result, start)
            self._settle(permit, SUCCEEDED, start)
            return result
        start = self._now()
        permit = await self._table.aacquire(start)
        if not permit.allowed:
            raise self._rejected(permit)
        if permit.transition is not None:
            self._emit(permit.transition)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self._asettle(permit, self._classifier.error(exc), start)
            raise
        try:
            verdict = self._classifier.result(result)
        except BaseException:
            await self._asettle(permit, RELEASE, start)
            raise
        await self._asettle(permit, verdict, start)
        return result

    # -- shared steps -------------------------------------------------------------------

    def _rejected(self, permit: Permit) -> CircuitOpen:
        if permit.transition is not None:  # a remote store may move and refuse at once
            self._emit(permit.transition)
        error: CircuitOpen = _CircuitOpen(self.name, permit.retry_after)
        return error

    def _finish(self, permit: Permit, result: R, start: float) -> R:
        try:
            verdict = self._classifier.result(result)
        except BaseException:
            self._settle(permit, RELEASE, start)
            raise
        self._settle(permit, verdict, start)
        return result

    def _settle(self, permit: Permit, verdict: int, start: float) -> None:
        """Report a finished call to the table (sync)."""
        now = self._now()
        if verdict > FAILED:
            if verdict == CANCELLED and permit.state is HALF_OPEN:
                verdict = FAILED
            else:
                self._table.release(permit, now)
                return
        duration = now - start if self._timed else 0.0
        transition = self._table.record(permit, verdict == FAILED, duration, now)
        if transition is not None:
            self._emit(transition)

    async def _asettle(self, permit: Permit, verdict: int, start: float) -> None:
        """Report a finished call to a remote table."""
        now = self._now()
        if verdict > FAILED:
            if verdict == CANCELLED and permit.state is HALF_OPEN:
                verdict = FAILED
            else:
                await self._table.arelease(permit, now)
                return
        duration = now - start if self._timed else 0.0
        transition = await self._table.arecord(permit, verdict == FAILED, duration, now)
        if transition is not None:
            self._emit(transition)

    def _emit(self, transition: Transition) -> None:
        bus = self._events
        if bus.wants(CircuitStateChanged):
            old, new, reason = transition
            bus.emit(CircuitStateChanged(self.name, old.value, new.value, reason))

    # -- as a decorator -------------------------------------------------------------------

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``@breaker``: wrap a sync or async function (the fast path inlined)."""
        wrapper = self._wrap_async(fn) if is_async_callable(fn) else self._wrap_sync(fn)
        wrapper.__dict__["__resilience_policy__"] = self  # as Policy.decorate marks it
        return wrapper

    def _wrap_sync(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        table, error, settle = self._table, self._classifier.error, self._settle
        guarded, finish, emit, failure_if = (
            self._call_guarded,
            self._finish,
            self._emit,
            self._failure_if,
        )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            fast = table.closed
            if fast is None:
                return guarded(fn, args, kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                settle(fast.permit, error(exc), 0.0)
                raise
            if failure_if is not None:
                return finish(fast.permit, result, 0.0)
            transition = fast.success()
            if transition is not None:
                emit(transition)
            return result

        return wrapper

    def _wrap_async(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        table, error, settle = self._table, self._classifier.error, self._settle
        guarded, finish, emit, failure_if = (
            self._acall_guarded,
            self._finish,
            self._emit,
            self._failure_if,
        )

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            fast = table.closed
            if fast is None:
                return await guarded(fn, args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                settle(fast.permit, error(exc), 0.0)
                raise
            if failure_if is not None:
                return finish(fast.permit, result, 0.0)
            transition = fast.success()
            if transition is not None:
                emit(transition)
            return result

        return wrapper

    # -- acquire / run / record by hand ------------------------------------------------

    def permit(self, now: float | None = None) -> Permit:
        """Ask to run one call (never raises; check ``.allowed``); then ``on_*`` or ``release``."""
        permit = self._table.acquire(self._now() if now is None else now)
        if permit.transition is not None:
            self._emit(permit.transition)
        return permit

    def on_success(self, permit: Permit, duration: float = 0.0, now: float | None = None) -> None:
        """The permitted call succeeded after ``duration`` seconds."""
        self._record(permit, False, duration, now)

    def on_failure(self, permit: Permit, duration: float = 0.0, now: float | None = None) -> None:
        """The permitted call failed after ``duration`` seconds."""
        self._record(permit, True, duration, now)

    def release(self, permit: Permit, now: float | None = None) -> None:
        """The permitted call does not count; a half-open probe frees its slot."""
        self._table.release(permit, self._now() if now is None else now)

    def _record(self, permit: Permit, failed: bool, duration: float, now: float | None) -> None:
        transition = self._table.record(
            permit, failed, duration, self._now() if now is None else now
        )
        if transition is not None:
            self._emit(transition)

    def on_error(self, permit: Permit, exc: BaseException, started: float) -> None:
        """The permitted call raised ``exc``; ``started`` is when it began (``clock`` time).

        Classified like a protected call: ``ignore`` counts as nothing,
        ``record`` as a failure, anything else as a success; a cancelled probe
        in half-open is a failure, a cancelled closed call counts as nothing.
        """
        self._settle(permit, self._classifier.error(exc), started)

    async def aon_error(self, permit: Permit, exc: BaseException, started: float) -> None:
        """Async :meth:`on_error` (for middleware; works with remote stores)."""
        await self._asettle(permit, self._classifier.error(exc), started)

    async def apermit(self, now: float | None = None) -> Permit:
        permit = await self._table.aacquire(self._now() if now is None else now)
        if permit.transition is not None:
            self._emit(permit.transition)
        return permit

    async def aon_success(
        self, permit: Permit, duration: float = 0.0, now: float | None = None
    ) -> None:
        await self._arecord(permit, False, duration, now)

    async def aon_failure(
        self, permit: Permit, duration: float = 0.0, now: float | None = None
    ) -> None:
        await self._arecord(permit, True, duration, now)

    async def arelease(self, permit: Permit, now: float | None = None) -> None:
        await self._table.arelease(permit, self._now() if now is None else now)

    async def _arecord(
        self, permit: Permit, failed: bool, duration: float, now: float | None
    ) -> None:
        transition = await self._table.arecord(
            permit, failed, duration, self._now() if now is None else now
        )
        if transition is not None:
            self._emit(transition)

    # -- state and operator controls ---------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state a call would meet now (``half_open`` as soon as the open timer ran out)."""
        return self._table.state(self._now())

    def snapshot(self) -> BreakerSnapshot:
        """State plus the window's totals, for metrics and health pages."""
        return self._table.snapshot(self._now())

    def force_open(self) -> None:
        """Open and stay open (no probes) until ``force_closed()`` or ``reset()``."""
        self._apply(self._table.force(CircuitState.OPEN, self._now()))

    def force_closed(self) -> None:
        """Close and stay closed (never trips; outcomes still counted) until ``reset()``."""
        self._apply(self._table.force(CircuitState.CLOSED, self._now()))

    def reset(self) -> None:
        """Back to closed with an empty window, releasing any forced state."""
        self._apply(self._table.reset(self._now()))

    async def astate(self) -> CircuitState:
        return await self._table.astate(self._now())

    async def asnapshot(self) -> BreakerSnapshot:
        return await self._table.asnapshot(self._now())

    async def aforce_open(self) -> None:
        self._apply(await self._table.aforce(CircuitState.OPEN, self._now()))

    async def aforce_closed(self) -> None:
        self._apply(await self._table.aforce(CircuitState.CLOSED, self._now()))

    async def areset(self) -> None:
        self._apply(await self._table.areset(self._now()))

    def _apply(self, transition: Transition | None) -> None:
        if transition is not None:
            self._emit(transition)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, table={self._table!r})"
