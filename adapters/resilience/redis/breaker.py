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

import hashlib
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from resilience.breaker.config import BreakerConfig, check_duration
from resilience.breaker.state import BreakerSnapshot, CircuitState, Permit, Transition
from resilience.breaker.store import ClosedRecorder
from resilience.breaker.windows import TimeWindow
from resilience.errors import StoreUnavailable
from resilience.events import EventBus, StoreFailed, default_bus
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
        if on_store_error not in ("fail_open", "fail_closed"):
            raise ValueError(
                f"on_store_error must be 'fail_open' or 'fail_closed', got {on_store_error!r}"
            )
        if events is not None and not isinstance(events, EventBus):
            raise ValueError(f"events must be an EventBus, got {events!r}")
        self.store = store
        self.on_store_error: OnStoreError = on_store_error
        self.store_error_retry_after = check_duration(
            store_error_retry_after, "store_error_retry_after"
        )
        self.idle_ttl = None if idle_ttl is None else check_duration(idle_ttl, "idle_ttl")
        self.held_ttl = check_duration(held_ttl, "held_ttl")
        self.probe_timeout = (
            None if probe_timeout is None else check_duration(probe_timeout, "probe_timeout")
        )
        self.events = default_bus if events is None else events

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

    # -- running scripts ------------------------------------------------------------------

    def _clock(self, now: float) -> bytes:
        """``b""`` tells the script to read the server's clock."""
        return b"" if self._server_clock else _number(now)

    def _run(self, call: Call, now: float, arg: bytes) -> Any:
        run = self._sync
        if run is None:
            raise TypeError(
                "RedisStore has only an asyncio client: use the breaker's async methods "
                "(acall, apermit, astate, ...), or pass a redis.Redis as client and the "
                "asyncio one as async_client"
            )
        return run(call, self.key, self._clock(now), arg)

    def _arun(self, call: Call, now: float, arg: bytes) -> Awaitable[Any]:
        run = self._async
        if run is None:
            raise TypeError(
                "RedisStore has only a sync client: use the breaker's sync methods, or pass "
                "a redis.asyncio.Redis as async_client"
            )
        return run(call, self.key, self._clock(now), arg)

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
        if state is None:
            return b"reset"
        if state is CLOSED:
            return b"closed"
        if state is OPEN:
            return b"open"
        raise ValueError(f"state must be CircuitState.OPEN or CircuitState.CLOSED, got {state!r}")

    # -- the table protocol (sync) ----------------------------------------------------------

    def state(self, now: float) -> CircuitState:
        return self.snapshot(now).state

    def acquire(self, now: float) -> Permit:
        try:
            reply = self._run(self._acquire, now, b"")
        except StoreUnavailable as exc:
            return self._outage(exc, "acquire")
        return self._permit(reply)

    def record(
        self, permit: Permit, failed: bool, duration: float, now: float
    ) -> Transition | None:
        arg = self._outcome(permit, failed, duration)
        if arg is None:
            return None
        try:
            return _transition(self._run(self._record, now, arg))
        except StoreUnavailable as exc:
            self._failed(exc, "record", "dropped")
            return None

    def release(self, permit: Permit, now: float) -> None:
        if permit.state is CLOSED or permit.token.__class__ is not int:
            return  # nothing to give back
        try:
            self._run(self._release, now, b"%d" % permit.token)
        except StoreUnavailable as exc:
            self._failed(exc, "release", "dropped")

    def force(self, state: CircuitState, now: float) -> Transition | None:
        return self._apply(self._control_arg(state), now)

    def reset(self, now: float) -> Transition | None:
        return self._apply(b"reset", now)

    def _apply(self, arg: bytes, now: float) -> Transition | None:
        try:
            return _transition(self._run(self._control, now, arg))
        except StoreUnavailable as exc:
            self._failed(exc, "control", "raised")
            raise

    def snapshot(self, now: float) -> BreakerSnapshot:
        try:
            return self._snapshot(self._run(self._read, now, b""))
        except StoreUnavailable as exc:
            return self._outage_snapshot(exc)

    # -- async twins: the same scripts on the asyncio client -------------------------------

    async def astate(self, now: float) -> CircuitState:
        return (await self.asnapshot(now)).state

    async def aacquire(self, now: float) -> Permit:
        try:
            reply = await self._arun(self._acquire, now, b"")
        except StoreUnavailable as exc:
            return self._outage(exc, "acquire")
        return self._permit(reply)

    async def arecord(
        self, permit: Permit, failed: bool, duration: float, now: float
    ) -> Transition | None:
        arg = self._outcome(permit, failed, duration)
        if arg is None:
            return None
        try:
            return _transition(await self._arun(self._record, now, arg))
        except StoreUnavailable as exc:
            self._failed(exc, "record", "dropped")
            return None

    async def arelease(self, permit: Permit, now: float) -> None:
        if permit.state is CLOSED or permit.token.__class__ is not int:
            return
        try:
            await self._arun(self._release, now, b"%d" % permit.token)
        except StoreUnavailable as exc:
            self._failed(exc, "release", "dropped")

    async def aforce(self, state: CircuitState, now: float) -> Transition | None:
        return await self._aapply(self._control_arg(state), now)

    async def areset(self, now: float) -> Transition | None:
        return await self._aapply(b"reset", now)

    async def _aapply(self, arg: bytes, now: float) -> Transition | None:
        try:
            return _transition(await self._arun(self._control, now, arg))
        except StoreUnavailable as exc:
            self._failed(exc, "control", "raised")
            raise

    async def asnapshot(self, now: float) -> BreakerSnapshot:
        try:
            return self._snapshot(await self._arun(self._read, now, b""))
        except StoreUnavailable as exc:
            return self._outage_snapshot(exc)

    def __repr__(self) -> str:
        return f"RedisBreakerTable(name={self.name!r}, key={self.key!r})"
