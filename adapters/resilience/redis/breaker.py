"""Circuit-breaker state in Redis: one circuit shared by every process.

``CircuitBreaker(name, store=RedisStore(...))`` asks the store for a
:class:`RedisBreakerTable`; every transition is one Lua script run
atomically by Redis (``lua/breaker_*.lua`` after the shared prelude and
``breaker_common.lua``), mirroring the in-memory state machine operation by
operation.  All of a breaker's state lives in one hash,
``<key_prefix>cb:{<name>}``, so it sits in one Cluster slot; a missing key
is a closed circuit, and creating a table writes nothing.

Store outages follow one policy per :class:`RedisBreakerStore`:
``"fail_open"`` (default) lets calls through, ``"fail_closed"`` refuses them
with ``CircuitOpen``; either way the failure is counted and emitted as
``StoreFailed`` and no redis-py exception reaches the caller.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar

from resilience._validate import one_of, positive_seconds
from resilience.breaker.config import BreakerConfig
from resilience.breaker.store import ClosedRecorder
from resilience.breaker.values import BreakerSnapshot, CircuitState, Permit, Transition
from resilience.breaker.windows import TimeWindow
from resilience.clock import SYSTEM_CLOCK
from resilience.errors import StoreUnavailable
from resilience.events import EventBus, StoreFailed, resolve_bus
from resilience.policy import Io, Steps, drive_async, drive_sync
from resilience.redis._scripts import Call, Script, _read
from resilience.redis.table import _escape, _number, _packed

if TYPE_CHECKING:
    from resilience.redis.store import RedisStore

__all__ = ["MIN_IDLE_TTL", "RedisBreakerStore", "RedisBreakerTable"]

OnStoreError = Literal["fail_open", "fail_closed"]

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
MIN_IDLE_TTL = 3600.0
"""Seconds an idle breaker's key lives at least (a count window spans no fixed time)."""

_STATES = {b"c": CLOSED, b"o": OPEN, b"h": HALF_OPEN}
_NO_TRANSITION = (b"-", "-")
_OUTAGE = object()  # the token of a permit answered by the outage policy


def _script(op: str) -> Script:
    source = _read("prelude") + b"\n" + _read("breaker_common") + b"\n" + _read(f"breaker_{op}")
    return Script(f"breaker_{op}", source, hashlib.sha1(source).hexdigest())


_SCRIPTS = {op: _script(op) for op in ("acquire", "record", "release", "control", "read")}


def _as_bytes(reply: bytes | str) -> bytes:
    return reply if reply.__class__ is bytes else str(reply).encode()


def _parse_transition(text: bytes) -> Transition:
    states, reason = text.split(b":", 1)
    return Transition(_STATES[states[:1]], _STATES[states[1:]], reason.decode())


def _transition(reply: bytes | str) -> Transition | None:
    if reply in _NO_TRANSITION:
        return None
    return _parse_transition(_as_bytes(reply))


_Self = TypeVar("_Self")
_P = ParamSpec("_P")
_T = TypeVar("_T")


def _driven(
    steps: Callable[Concatenate[_Self, _P], Steps[_T]],
) -> Callable[Concatenate[_Self, _P], _T]:
    """A table operation run by the sync driver (no sleeps: the clock is never read)."""

    @functools.wraps(steps)
    def run(self: _Self, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return drive_sync(steps(self, *args, **kwargs), SYSTEM_CLOCK)

    return run


def _adriven(
    steps: Callable[Concatenate[RedisBreakerTable, _P], Steps[_T]],
) -> Callable[Concatenate[_AsyncOps, _P], Coroutine[Any, Any, _T]]:
    """The same operation run by the async driver, as a method of the table's ``aio``."""

    async def run(self: _AsyncOps, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await drive_async(steps(self.table, *args, **kwargs), SYSTEM_CLOCK)

    return run


class RedisBreakerStore:
    """Breaker state in a :class:`~resilience.redis.RedisStore`, with an outage policy.

    ``RedisStore.breaker_table`` uses one with the defaults; build your own to
    change them: ``CircuitBreaker(name, store=RedisBreakerStore(store, ...))``.

    ``on_store_error``: ``"fail_open"`` lets calls through while Redis cannot
    answer (the dependency is not protected, but Redis is not a new single
    point of failure); ``"fail_closed"`` refuses them with ``CircuitOpen``
    (``retry_after=store_error_retry_after``).  ``idle_ttl``: seconds a
    breaker's key outlives its last write (default
    ``max(MIN_IDLE_TTL, 2 * max(open_duration, TimeWindow.seconds))`` plus the
    store's ``ttl_margin``); ``held_ttl``: the same after ``force_open()`` /
    ``force_closed()``.  ``probe_timeout``: reopen a half-open circuit whose
    probes have not all reported after that many seconds (a prober that died
    holds its slot; ``None``, the default, waits as the in-memory breaker
    does, until the key expires).  ``events``: where ``StoreFailed`` goes.
    """

    __slots__ = (
        "events",
        "held_ttl",
        "idle_ttl",
        "on_store_error",
        "probe_timeout",
        "store",
        "store_error_retry_after",
    )

    def __init__(
        self,
        store: RedisStore,
        *,
        on_store_error: OnStoreError = "fail_open",
        store_error_retry_after: float = 1.0,
        idle_ttl: float | None = None,
        held_ttl: float = 86_400.0,
        probe_timeout: float | None = None,
        events: EventBus | None = None,
    ) -> None:
        from resilience.redis.store import RedisStore

        if not isinstance(store, RedisStore):
            raise ValueError(f"store must be a RedisStore, got {store!r}")
        one_of(on_store_error, "on_store_error", ("fail_open", "fail_closed"))
        self.store = store
        self.on_store_error: OnStoreError = on_store_error
        self.store_error_retry_after = positive_seconds(
            store_error_retry_after, "store_error_retry_after"
        )
        self.idle_ttl = None if idle_ttl is None else positive_seconds(idle_ttl, "idle_ttl")
        self.held_ttl = positive_seconds(held_ttl, "held_ttl")
        self.probe_timeout = (
            None if probe_timeout is None else positive_seconds(probe_timeout, "probe_timeout")
        )
        self.events = resolve_bus(events)

    @property
    def supports_async(self) -> bool:
        """Whether the async breaker methods can reach Redis (the middlewares check)."""
        return bool(self.store.supports_async)

    def breaker_table(
        self, name: str, config: BreakerConfig, now: Callable[[], float]
    ) -> RedisBreakerTable:
        """The table for circuit ``name``: no round trip, no write."""
        return RedisBreakerTable(self, name, config, now)

    def ttls(self, config: BreakerConfig) -> tuple[int, int]:
        """Milliseconds a key lives after its last write: idle, and while held."""
        window = config.window
        span = window.seconds if isinstance(window, TimeWindow) else 0.0
        idle = self.idle_ttl
        if idle is None:
            idle = max(MIN_IDLE_TTL, 2.0 * max(config.open_duration, span))
        elif idle <= config.open_duration:
            raise ValueError(
                f"idle_ttl ({idle}) must exceed open_duration ({config.open_duration}):"
                " an open circuit would expire (close) before its timer ran out"
            )
        margin = self.store.ttl_margin
        return math.ceil((idle + margin) * 1000), math.ceil((self.held_ttl + margin) * 1000)

    def __repr__(self) -> str:
        return (
            f"RedisBreakerStore({self.store!r}, on_store_error={self.on_store_error!r}, "
            f"probe_timeout={self.probe_timeout})"
        )


def _plan(owner: RedisBreakerStore, config: BreakerConfig) -> tuple[bytes, bytes]:
    """The packed parameters and the window's geometry tag, sent with every script."""
    window, decider = config.window, config.decider
    if isinstance(window, TimeWindow):
        shape: tuple[float, ...] = (1.0, window.width, float(window.buckets))
        geometry = f"t{window.seconds!r}/{window.buckets}"
    else:
        shape = (0.0, float(window.size), 0.0)
        geometry = f"c{window.size}"
    idle_ms, held_ms = owner.ttls(config)

    def off(value: float | None) -> float:
        return -1.0 if value is None else float(value)

    packed = _packed(
        *shape,
        off(decider.failure_rate_threshold),
        float(decider.minimum_calls),
        off(decider.consecutive_failures),
        off(decider.slow_call_rate_threshold),
        config.open_duration,
        float(config.half_open_max_calls),
        float(idle_ms),
        float(held_ms),
        off(owner.probe_timeout),
    )
    return packed, geometry.encode()


class RedisBreakerTable:
    """One circuit's state in Redis; each method is one script call (one round trip).

    Permits carry the state's epoch (an ``int``) as their token.  Closed
    permits need no release, and outcomes of permits answered by the outage
    policy are not sent anywhere.
    """

    __slots__ = (
        "_acquire",
        "_async",
        "_cached",
        "_control",
        "_events",
        "_outage_permit",
        "_read",
        "_record",
        "_release",
        "_server_clock",
        "_slow_limit",
        "_sync",
        "aio",
        "config",
        "key",
        "name",
        "now",
        "owner",
        "store_errors",
    )

    local = False
    closed: ClosedRecorder | None = None

    def __init__(
        self,
        owner: RedisBreakerStore,
        name: str,
        config: BreakerConfig,
        now: Callable[[], float],
    ) -> None:
        store = owner.store
        self.owner = owner
        self.name = name
        self.config = config
        self.now = now
        self.key = f"{store.key_prefix}cb:{{{_escape(name)}}}".encode("utf-8", "surrogatepass")
        fixed = _plan(owner, config)
        self._acquire = Call(_SCRIPTS["acquire"], fixed)
        self._record = Call(_SCRIPTS["record"], fixed)
        self._release = Call(_SCRIPTS["release"], fixed)
        self._control = Call(_SCRIPTS["control"], fixed)
        self._read = Call(_SCRIPTS["read"], fixed)
        self._sync = store.run_sync
        self._async = store.run_async
        self._server_clock = store.clock == "server"
        self._slow_limit = config.slow_call_duration
        self._events = owner.events
        if owner.on_store_error == "fail_open":
            self._outage_permit = Permit(True, CLOSED, 0.0, _OUTAGE)
        else:
            retry = owner.store_error_retry_after
            self._outage_permit = Permit(False, OPEN, retry, _OUTAGE)
        # The last closed permit and the reply it came from: no reply is empty.
        self._cached: tuple[bytes | str, Permit] = (b"", self._outage_permit)
        self.store_errors = 0
        self.aio = _AsyncOps(self)

    # -- running scripts ------------------------------------------------------------------

    def _clock(self, now: float) -> bytes:
        """``b""`` tells the script to read the server's clock."""
        return b"" if self._server_clock else _number(now)

    def _script(self, call: Call, now: float, arg: bytes) -> Io:
        """One script run as a driver step: the sync client or the asyncio one."""
        return Io(self._run, self._arun, call, self.key, self._clock(now), arg)

    def _run(self, call: Call, key: bytes, now: bytes, arg: bytes) -> Any:
        run = self._sync
        if run is None:
            raise TypeError(
                "RedisStore has only an asyncio client: use the breaker's async methods "
                "(acall, apermit, astate, ...), or pass a redis.Redis as client and the "
                "asyncio one as async_client"
            )
        return run(call, key, now, arg)

    def _arun(self, call: Call, key: bytes, now: bytes, arg: bytes) -> Awaitable[Any]:
        run = self._async
        if run is None:
            raise TypeError(
                "RedisStore has only a sync client: use the breaker's sync methods, or pass "
                "a redis.asyncio.Redis as async_client"
            )
        return run(call, key, now, arg)

    def _failed(self, exc: StoreUnavailable, operation: str, action: str) -> None:
        """Count a store failure and tell the event bus what the policy did."""
        self.store_errors += 1
        bus = self._events
        if bus.wants(StoreFailed):
            bus.emit(StoreFailed(self.name, operation, f"{type(exc).__name__}: {exc}", action))

    # -- replies ----------------------------------------------------------------------------

    def _permit(self, reply: bytes | str) -> Permit:
        cached_reply, cached = self._cached
        if reply == cached_reply:  # steady state: "1 c 0 <epoch> -" again
            return cached
        allowed, state, retry_after, epoch, transition = _as_bytes(reply).split()
        permit = Permit(
            allowed == b"1",
            _STATES[state],
            float(retry_after),
            int(epoch),
            None if transition == b"-" else _parse_transition(transition),
        )
        if permit.allowed and permit.state is CLOSED:
            self._cached = (reply, permit)
        return permit

    def _outage(self, exc: StoreUnavailable, operation: str) -> Permit:
        self._failed(exc, operation, self.owner.on_store_error)
        return self._outage_permit

    def _snapshot(self, reply: bytes | str) -> BreakerSnapshot:
        state, held, calls, failures, slow, run, in_flight, succeeded, retry = _as_bytes(
            reply
        ).split()
        return BreakerSnapshot(
            _STATES[state],
            held == b"1",
            int(calls),
            int(failures),
            int(slow),
            int(run),
            int(in_flight),
            int(succeeded),
            float(retry),
        )

    def _outage_snapshot(self, exc: StoreUnavailable) -> BreakerSnapshot:
        permit = self._outage(exc, "snapshot")
        return BreakerSnapshot(permit.state, False, 0, 0, 0, 0, 0, 0, permit.retry_after)

    def _outcome(self, permit: Permit, failed: bool, duration: float) -> bytes | None:
        """The record script's argument, or ``None`` when there is nothing to send."""
        token = permit.token
        if token.__class__ is not int:
            return None  # answered by the outage policy: no epoch to report to
        limit = self._slow_limit
        slow = limit is not None and duration > limit
        return b"%d %d" % (token, failed + 2 * slow)

    @staticmethod
    def _control_arg(state: CircuitState | None) -> bytes:
        return b"reset" if state is None else b"closed" if state is CLOSED else b"open"

    # -- the operations, each one step generator for both drivers ----------------------

    def _acquire_steps(self, now: float) -> Steps[Permit]:
        try:
            reply = yield self._script(self._acquire, now, b"")
        except StoreUnavailable as exc:
            return self._outage(exc, "acquire")
        return self._permit(reply)

    def _record_steps(
        self, permit: Permit, failed: bool, duration: float, now: float
    ) -> Steps[Transition | None]:
        arg = self._outcome(permit, failed, duration)
        if arg is None:
            return None
        try:
            return _transition((yield self._script(self._record, now, arg)))
        except StoreUnavailable as exc:
            self._failed(exc, "record", "dropped")
            return None

    def _release_steps(self, permit: Permit, now: float) -> Steps[None]:
        if permit.state is CLOSED or permit.token.__class__ is not int:
            return  # nothing to give back
        try:
            yield self._script(self._release, now, b"%d" % permit.token)
        except StoreUnavailable as exc:
            self._failed(exc, "release", "dropped")

    def _control_steps(self, state: CircuitState | None, now: float) -> Steps[Transition | None]:
        arg = self._control_arg(state)
        try:
            return _transition((yield self._script(self._control, now, arg)))
        except StoreUnavailable as exc:
            self._failed(exc, "control", "raised")
            raise

    def _snapshot_steps(self, now: float) -> Steps[BreakerSnapshot]:
        try:
            return self._snapshot((yield self._script(self._read, now, b"")))
        except StoreUnavailable as exc:
            return self._outage_snapshot(exc)

    def _state_steps(self, now: float) -> Steps[CircuitState]:
        return (yield from self._snapshot_steps(now)).state

    def _force_steps(self, state: CircuitState, now: float) -> Steps[Transition | None]:
        if state is not CLOSED and state is not OPEN:
            raise ValueError(
                f"state must be CircuitState.OPEN or CircuitState.CLOSED, got {state!r}"
            )
        return (yield from self._control_steps(state, now))

    def _reset_steps(self, now: float) -> Steps[Transition | None]:
        return (yield from self._control_steps(None, now))

    # -- the table protocol: the sync driver here, the async one in ``aio`` -----------------

    state = _driven(_state_steps)
    acquire = _driven(_acquire_steps)
    record = _driven(_record_steps)
    release = _driven(_release_steps)
    force = _driven(_force_steps)
    reset = _driven(_reset_steps)
    snapshot = _driven(_snapshot_steps)

    def __repr__(self) -> str:
        return f"RedisBreakerTable(name={self.name!r}, key={self.key!r})"


class _AsyncOps:
    """A Redis table's ``aio``: the same step generators, awaited on the asyncio client."""

    __slots__ = ("table",)

    def __init__(self, table: RedisBreakerTable) -> None:
        self.table = table

    state = _adriven(RedisBreakerTable._state_steps)
    acquire = _adriven(RedisBreakerTable._acquire_steps)
    record = _adriven(RedisBreakerTable._record_steps)
    release = _adriven(RedisBreakerTable._release_steps)
    force = _adriven(RedisBreakerTable._force_steps)
    reset = _adriven(RedisBreakerTable._reset_steps)
    snapshot = _adriven(RedisBreakerTable._snapshot_steps)
