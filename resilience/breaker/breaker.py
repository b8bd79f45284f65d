"""``CircuitBreaker``: permission, call, record, with no lock held during the call.

Resilience4j's shape: ask the state store for a permit, run the protected
call outside any lock, then report its outcome with that permit.  The state
store (in memory by default, shared when ``store=`` is given) owns every
transition; this class classifies outcomes, times calls when it must, raises
:class:`~resilience.errors.CircuitOpen` and emits
:class:`~resilience.events.CircuitStateChanged`.

Every path but one is a step generator (``_guarded``, ``_acquire``,
``_settle``, ``_read``, ``_move``) run by ``drive_sync`` or ``drive_async``; store
operations are ``Io`` steps, so a remote table's async form is awaited and a
local table's sync form is called without an extra await.  The one
exception is the closed hot path, built once by ``_closed_path``: it reads
one attribute (``table.closed``), makes the call,
and counts a success with one lock-free ``next()``; it reads no clock unless
slow calls or a time window need one and builds nothing when no sink listens.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, ParamSpec, TypeVar, overload

from resilience._validate import callable_or_none, exception_types
from resilience.breaker.config import BreakerConfig
from resilience.breaker.guard import BreakerGuard
from resilience.breaker.memory import MemoryBreakerStore
from resilience.breaker.outcome import CANCELLED, FAILED, RELEASE, Classifier
from resilience.breaker.store import AsyncBreakerOps, BreakerStore, BreakerTable, async_ops
from resilience.breaker.values import BreakerSnapshot, CircuitState, Permit, Transition
from resilience.breaker.windows import CountWindow, Window
from resilience.clock import Clock, now_function, resolve_clock
from resilience.errors import CircuitOpen, PrebuiltRefusal
from resilience.events import CircuitStateChanged, EventBus, resolve_bus
from resilience.metrics import Tally
from resilience.policy import CALL, Io, Policy, Steps, drive_async, drive_sync, is_async_callable

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
R = TypeVar("R")

HALF_OPEN = CircuitState.HALF_OPEN
_DEFAULT_WINDOW = CountWindow(100)


class _CircuitOpen(PrebuiltRefusal, CircuitOpen):
    """``CircuitOpen`` built by C code alone (see ``PrebuiltRefusal``)."""


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
        "__weakref__",  # metrics exporters track policies weakly
        "_aio",
        "_arun",
        "_classifier",
        "_events",
        "_failure_if",
        "_local",
        "_now",
        "_run",
        "_table",
        "_timed",
        "clock",
        "config",
        "name",
        "store",
        "tally",
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
            exception_types(record, "record", allow_empty=True),
            exception_types(ignore, "ignore", allow_empty=True),
            callable_or_none(failure_if, "failure_if"),
        )
        self._failure_if = self._classifier.failure_if
        if clock is not None and not callable(getattr(clock, "monotonic", None)):
            raise ValueError(f"clock must have a monotonic() method, got {clock!r}")
        if store is not None and not callable(getattr(store, "breaker_table", None)):
            raise ValueError(
                f"store must be able to hold breaker state (breaker_table), got {store!r}"
            )
        self.name = name
        self.clock = resolve_clock(clock)
        self._now = now_function(self.clock)
        self._events = resolve_bus(events)
        self.store: BreakerStore = MemoryBreakerStore() if store is None else store
        self._table: BreakerTable = self.store.breaker_table(name, self.config, self._now)
        self._local = bool(self._table.local)
        self._aio: AsyncBreakerOps | None = async_ops(self._table)
        self._timed = self.config.slow_call_duration is not None
        self.tally = Tally()
        """Calls permitted (``allowed``) and refused while open so far, for metrics exporters."""
        self._run, self._arun = self._closed_path()

    # -- as a policy ------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` if the circuit lets it; raise ``CircuitOpen`` if not."""
        result: R = self._run(fn, args, kwargs)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn`` if the circuit lets it; raise ``CircuitOpen`` if not."""
        result: R = await self._arun(fn, args, kwargs)
        return result

    def _closed_path(self) -> tuple[Callable[..., Any], Callable[..., Awaitable[Any]]]:
        """THE hot path, built once: a local table, closed or not.

        The sync and async products differ only in ``await fn``: that is the
        one sync/async pair in the breaker, kept because routing the closed
        path through a generator would double its cost (``call``, ``acall``
        and the decorator's wrappers are one thin frame over these).  While
        the table offers its closed shortcut a success is one lock-free
        ``next()``; otherwise a
        local table is asked directly (``acquire``, ``_finish_now``), which is
        what the async driver would do with its ``Io`` steps anyway.  A remote
        table goes through the one guarded generator, ``_guarded``.
        """
        table, emit, failure_if, clock = self._table, self._emit, self._failure_if, self.clock
        guarded, error, checked = self._guarded, self._classifier.error, self._checked
        refusal = self._refusal
        settle_now, finish_now = self._settle_now, self._finish_now
        local, now, acquire, tally = self._local, self._now, table.acquire, self.tally
        name = self.name

        def run(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
            fast = table.closed
            if fast is not None:
                permit, start = fast.permit, 0.0
            elif local:
                start = now()
                permit = acquire(start)
                if not permit[0]:  # refused (allowed, state, retry_after, token, transition)
                    if permit[4] is None:  # nothing to emit: _refusal inlined, one call less
                        tally.rejected += 1
                        raise _CircuitOpen(name, permit[2])
                    raise refusal(permit)  # here: one traceback frame less (see _refusal)
                if permit[4] is not None:
                    checked(permit)
            else:
                return drive_sync(guarded(), clock, fn, args, kwargs)
            tally.allowed += 1
            try:
                # An empty **kwargs still goes through a dict: ~20 ns saved without it.
                result = fn(*args, **kwargs) if kwargs else fn(*args)
            except BaseException as exc:
                settle_now(permit, error(exc), start)
                raise
            if fast is None or failure_if is not None:
                return finish_now(permit, result, start)
            seq = fast.success_seq()  # fast.success(), inlined: one call level less
            fast.mark = seq
            if seq == fast.crossing:
                transition = fast.judge(seq)
                if transition is not None:
                    emit(transition)
            return result

        async def arun(fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> Any:
            fast = table.closed
            if fast is not None:
                permit, start = fast.permit, 0.0
            elif local:
                start = now()
                permit = acquire(start)
                if not permit[0]:  # refused (allowed, state, retry_after, token, transition)
                    if permit[4] is None:  # nothing to emit: _refusal inlined, one call less
                        tally.rejected += 1
                        raise _CircuitOpen(name, permit[2])
                    raise refusal(permit)  # here: one traceback frame less (see _refusal)
                if permit[4] is not None:
                    checked(permit)
            else:
                return await drive_async(guarded(), clock, fn, args, kwargs)
            tally.allowed += 1
            try:
                result = await (fn(*args, **kwargs) if kwargs else fn(*args))
            except BaseException as exc:
                settle_now(permit, error(exc), start)
                raise
            if fast is None or failure_if is not None:
                return finish_now(permit, result, start)
            seq = fast.success_seq()  # fast.success(), inlined: one call level less
            fast.mark = seq
            if seq == fast.crossing:
                transition = fast.judge(seq)
                if transition is not None:
                    emit(transition)
            return result

        return run, arun

    # -- the guarded path and its steps, written once for both drivers ---------------

    def _guarded(self) -> Steps[Any]:
        """Acquire, CALL, settle: every store operation an ``Io`` step."""
        start = self._now()
        permit = yield from self._acquire(start, refuse=True)
        try:
            result = yield CALL
        except BaseException as exc:
            yield from self._settle(permit, self._classifier.error(exc), start)
            raise
        verdict, broken = self._judge(result)
        yield from self._settle(permit, verdict, start)
        if broken is not None:
            raise broken
        return result

    def _acquire(self, now: float, *, refuse: bool) -> Steps[Permit]:
        aio = self._aio
        permit: Permit = yield Io(self._table.acquire, None if aio is None else aio.acquire, now)
        if refuse and not permit.allowed:
            raise self._refusal(permit)
        if self._checked(permit) is None:
            self.tally.allowed += 1
        return permit

    def _checked(self, permit: Permit) -> CircuitOpen | None:
        """Emit the permit's transition; the ``CircuitOpen`` to raise if it refuses."""
        if permit.allowed:
            if permit.transition is not None:  # open -> half-open
                self._emit(permit.transition)
            return None
        return self._refusal(permit)

    def _refusal(self, permit: Permit) -> CircuitOpen:
        """A refusing permit's ``CircuitOpen``, counted, its transition emitted.

        Callers raise it straight from the call (``raise self._refusal(p)``), never
        from a local: error -> traceback -> frame -> local is a cycle that only the
        garbage collector frees (it measured +400 ns per refusal).
        """
        if permit.transition is not None:  # a remote store may move and refuse at once
            self._emit(permit.transition)
        self.tally.rejected += 1
        error: CircuitOpen = _CircuitOpen(self.name, permit.retry_after)
        return error

    def _judge(self, result: Any) -> tuple[int, BaseException | None]:
        """A returned value's verdict (``failure_if``); a predicate that raises judges nothing."""
        try:
            return self._classifier.result(result), None
        except BaseException as exc:
            return RELEASE, exc

    def _outcome(self, permit: Permit, verdict: int, start: float) -> Io:
        """The store operation reporting a finished call: ``record`` it, or ``release`` it."""
        now, table, aio = self._now(), self._table, self._aio
        if verdict > FAILED:
            if verdict == CANCELLED and permit.state is HALF_OPEN:
                verdict = FAILED
            else:
                return Io(table.release, None if aio is None else aio.release, permit, now)
        duration = now - start if self._timed else 0.0
        failed = verdict == FAILED
        return Io(table.record, None if aio is None else aio.record, permit, failed, duration, now)

    def _settle(self, permit: Permit, verdict: int, start: float) -> Steps[None]:
        """Report a finished call, as a step for either driver."""
        transition = yield self._outcome(permit, verdict, start)
        if transition is not None:
            self._emit(transition)

    def _settle_now(self, permit: Permit, verdict: int, start: float) -> None:
        """Report a finished call to a local table: the same operation, called directly."""
        step = self._outcome(permit, verdict, start)
        transition = step.sync(*step.args)
        if transition is not None:
            self._emit(transition)

    def _finish_now(self, permit: Permit, result: Any, start: float) -> Any:
        """A local table's call returned: classify and record (a plain success most directly)."""
        if self._failure_if is None:
            now = self._now()
            duration = now - start if self._timed else 0.0
            transition = self._table.record(permit, False, duration, now)
            if transition is not None:
                self._emit(transition)
            return result
        verdict, broken = self._judge(result)
        self._settle_now(permit, verdict, start)
        if broken is not None:
            raise broken
        return result

    def _record(self, permit: Permit, failed: bool, duration: float, now: float) -> Steps[None]:
        aio = self._aio
        transition = yield Io(
            self._table.record,
            None if aio is None else aio.record,
            permit,
            failed,
            duration,
            now,
        )
        if transition is not None:
            self._emit(transition)

    def _release(self, permit: Permit, now: float) -> Steps[None]:
        aio = self._aio
        yield Io(self._table.release, None if aio is None else aio.release, permit, now)

    @overload
    def _read(self, op: Literal["state"]) -> Steps[CircuitState]: ...

    @overload
    def _read(self, op: Literal["snapshot"]) -> Steps[BreakerSnapshot]: ...

    def _read(self, op: str) -> Steps[Any]:
        """Read the table (``state`` or ``snapshot``) as one Io step."""
        aio = self._aio
        async_op = None if aio is None else getattr(aio, op)
        return (yield Io(getattr(self._table, op), async_op, self._now()))

    def _move(self, op: Literal["force", "reset"], *args: CircuitState) -> Steps[None]:
        """An operator control (``force`` or ``reset``) as one Io step; emits its transition."""
        aio = self._aio
        async_op = None if aio is None else getattr(aio, op)
        transition = yield Io(getattr(self._table, op), async_op, *args, self._now())
        if transition is not None:
            self._emit(transition)

    def _emit(self, transition: Transition) -> None:
        bus = self._events
        if bus.wants(CircuitStateChanged):
            old, new, reason = transition
            bus.emit(CircuitStateChanged(self.name, old.value, new.value, reason))

    # -- as a decorator and as a context manager -------------------------------------------

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``@breaker``: wrap a sync or async function in the closed path."""
        wrapper: Callable[..., Any]
        if is_async_callable(fn):
            arun = self._arun

            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                return await arun(fn, args, kwargs)

            wrapper = awrapper
        else:
            run = self._run

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return run(fn, args, kwargs)

        wrapper = functools.wraps(fn)(wrapper)
        wrapper.__dict__["__resilience_policy__"] = self  # as Policy.decorate marks it
        return wrapper

    def guard(self, *, refuse: bool = True) -> BreakerGuard:
        """``with breaker.guard() as g:`` protect a block; see :class:`BreakerGuard`.

        ``refuse=False`` enters even when the circuit refuses: check ``g.allowed``.
        """
        return BreakerGuard(self, refuse=refuse)

    def aguard(self, *, refuse: bool = True) -> BreakerGuard:
        """``async with breaker.aguard() as g:`` (works with remote stores)."""
        return BreakerGuard(self, refuse=refuse)

    # -- acquire / run / record by hand: one generator each, both drivers --------------

    def permit(self, now: float | None = None) -> Permit:
        """Ask to run one call (never raises; check ``.allowed``); then ``on_*`` or ``release``."""
        return drive_sync(self._acquire(self._at(now), refuse=False), self.clock)

    async def apermit(self, now: float | None = None) -> Permit:
        """Async :meth:`permit`."""
        return await drive_async(self._acquire(self._at(now), refuse=False), self.clock)

    def on_success(self, permit: Permit, duration: float = 0.0, now: float | None = None) -> None:
        """The permitted call succeeded after ``duration`` seconds."""
        drive_sync(self._record(permit, False, duration, self._at(now)), self.clock)

    async def aon_success(
        self, permit: Permit, duration: float = 0.0, now: float | None = None
    ) -> None:
        """Async :meth:`on_success`."""
        await drive_async(self._record(permit, False, duration, self._at(now)), self.clock)

    def on_failure(self, permit: Permit, duration: float = 0.0, now: float | None = None) -> None:
        """The permitted call failed after ``duration`` seconds."""
        drive_sync(self._record(permit, True, duration, self._at(now)), self.clock)

    async def aon_failure(
        self, permit: Permit, duration: float = 0.0, now: float | None = None
    ) -> None:
        """Async :meth:`on_failure`."""
        await drive_async(self._record(permit, True, duration, self._at(now)), self.clock)

    def release(self, permit: Permit, now: float | None = None) -> None:
        """The permitted call does not count; a half-open probe frees its slot."""
        drive_sync(self._release(permit, self._at(now)), self.clock)

    async def arelease(self, permit: Permit, now: float | None = None) -> None:
        """Async :meth:`release`."""
        await drive_async(self._release(permit, self._at(now)), self.clock)

    def on_error(self, permit: Permit, exc: BaseException, started: float) -> None:
        """The permitted call raised ``exc``; ``started`` is when it began (``clock`` time).

        Classified like a protected call: ``ignore`` counts as nothing,
        ``record`` as a failure, anything else as a success; a cancelled probe
        in half-open is a failure, a cancelled closed call counts as nothing.
        """
        drive_sync(self._settle(permit, self._classifier.error(exc), started), self.clock)

    async def aon_error(self, permit: Permit, exc: BaseException, started: float) -> None:
        """Async :meth:`on_error` (for middleware; works with remote stores)."""
        await drive_async(self._settle(permit, self._classifier.error(exc), started), self.clock)

    def _at(self, now: float | None) -> float:
        return self._now() if now is None else now

    # -- state and operator controls ---------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state a call would meet now (``half_open`` as soon as the open timer ran out)."""
        return drive_sync(self._read("state"), self.clock)

    async def astate(self) -> CircuitState:
        """Async :attr:`state`."""
        return await drive_async(self._read("state"), self.clock)

    def snapshot(self) -> BreakerSnapshot:
        """State plus the window's totals, for metrics and health pages."""
        return drive_sync(self._read("snapshot"), self.clock)

    async def asnapshot(self) -> BreakerSnapshot:
        """Async :meth:`snapshot`."""
        return await drive_async(self._read("snapshot"), self.clock)

    def force_open(self) -> None:
        """Open and stay open (no probes) until ``force_closed()`` or ``reset()``."""
        drive_sync(self._move("force", CircuitState.OPEN), self.clock)

    async def aforce_open(self) -> None:
        """Async :meth:`force_open`."""
        await drive_async(self._move("force", CircuitState.OPEN), self.clock)

    def force_closed(self) -> None:
        """Close and stay closed (never trips; outcomes still counted) until ``reset()``."""
        drive_sync(self._move("force", CircuitState.CLOSED), self.clock)

    async def aforce_closed(self) -> None:
        """Async :meth:`force_closed`."""
        await drive_async(self._move("force", CircuitState.CLOSED), self.clock)

    def reset(self) -> None:
        """Back to closed with an empty window, releasing any forced state."""
        drive_sync(self._move("reset"), self.clock)

    async def areset(self) -> None:
        """Async :meth:`reset`."""
        await drive_async(self._move("reset"), self.clock)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, table={self._table!r})"
