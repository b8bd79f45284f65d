"""``@idempotent``: run a function once per key, replay its result to every retry.

The slow path is one step generator (:meth:`Idempotent._steps`) run by the
shared drivers, so functions, coroutine functions and methods get the same
semantics from the same code: take the lease (one store step), replay /
refuse / wait (sleeps on the injected clock), run the call with the lease
renewed in the background, then complete (with the fencing token) or release.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar

from resilience import _validate
from resilience.clock import Clock, resolve_clock
from resilience.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidKey,
    StoreError,
)
from resilience.events import (
    EventBus,
    IdempotencyConflict,
    IdempotentReplay,
    StoreFailed,
    resolve_bus,
)
from resilience.idempotency.codec import (
    Codec,
    JsonCodec,
    decode_error,
    default_fingerprint,
    digest,
    encode_error,
)
from resilience.idempotency.record import (
    ACQUIRED,
    IN_PROGRESS,
    REPLAY,
    REUSED,
    new_token,
)
from resilience.idempotency.renewal import KEEPER, Lease, LeaseKeeper
from resilience.idempotency.store import IdempotencyStore
from resilience.policy import CALL, Io, Policy, Steps, drive_async, drive_sync

__all__ = ["Idempotent", "default_store", "idempotent"]

P = ParamSpec("P")
R = TypeVar("R")

MAX_KEY_LENGTH: Final = 1024
_FIRST_POLL: Final = 0.01
_MAX_POLL: Final = 0.5

_DEFAULT_STORE: IdempotencyStore | None = None


def default_store() -> IdempotencyStore:
    """The process-wide :class:`MemoryIdempotencyStore` that ``store=None`` means."""
    global _DEFAULT_STORE
    if _DEFAULT_STORE is None:
        from resilience.idempotency.memory import MemoryIdempotencyStore

        _DEFAULT_STORE = MemoryIdempotencyStore()
    return _DEFAULT_STORE


def _skips_self(fn: Callable[..., Any]) -> bool:
    """True for a function defined with ``self`` / ``cls`` first (decorated in a class body)."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] in ("self", "cls") and "." in getattr(fn, "__qualname__", "")


class Idempotent(Policy):
    """A policy that runs each keyed call once and replays its result; see :func:`idempotent`."""

    __slots__ = (
        "_bound",
        "_events",
        "_keeper",
        "clock",
        "codec",
        "fingerprint",
        "key",
        "lease",
        "name",
        "store",
        "store_errors",
        "ttl",
        "wait",
    )

    def __init__(
        self,
        store: IdempotencyStore | None = None,
        key: Callable[..., str | None] | None = None,
        *,
        ttl: float = 86400.0,
        lease: float = 30.0,
        fingerprint: Callable[..., str | bytes] | None = None,
        wait: float = 0.0,
        store_errors: tuple[type[BaseException], ...] = (),
        clock: Clock | None = None,
        codec: Codec | None = None,
        name: str | None = None,
        events: EventBus | None = None,
        keeper: LeaseKeeper | None = None,
    ) -> None:
        if store is not None and not isinstance(store, IdempotencyStore):
            raise ValueError(f"store must be an idempotency store, got {store!r}")
        _validate.callable_or_none(key, "key", what="callable(*args, **kwargs) -> str | None")
        _validate.callable_or_none(fingerprint, "fingerprint")
        if isinstance(store_errors, type):
            store_errors = (store_errors,)
        if not isinstance(store_errors, tuple) or not all(
            isinstance(c, type) and issubclass(c, Exception) for c in store_errors
        ):
            raise ValueError(
                f"store_errors must be a tuple of Exception subclasses, got {store_errors!r}"
            )
        if codec is not None and not isinstance(codec, Codec):
            raise ValueError(f"codec must have encode() and decode(), got {codec!r}")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a string, got {name!r}")
        self.store = store
        self.key = key
        self.ttl = _validate.positive_seconds(ttl, "ttl")
        self.lease = _validate.positive_seconds(lease, "lease")
        self.wait = _validate.non_negative_number(wait, "wait", unit="number of seconds")
        self.fingerprint = fingerprint
        self.store_errors = store_errors
        self.clock = resolve_clock(clock)
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.name = name or ""
        self._events = resolve_bus(events)
        self._keeper = keeper if keeper is not None else KEEPER
        self._bound: dict[Callable[..., Any], tuple[str, bool]] = {}

    # -- per call -----------------------------------------------------------------------------

    def _target(self, fn: Callable[..., Any]) -> tuple[str, bool]:
        """The record namespace for ``fn`` and whether its first argument is ``self``."""
        inner = getattr(fn, "__func__", fn)  # a bound method: cache by its function, not instance
        found = self._bound.get(inner)
        if found is None:
            space = self.name or f"{getattr(inner, '__module__', '?')}.{inner.__qualname__}"
            found = (space, _skips_self(inner))
            if len(self._bound) < 1024:
                self._bound[inner] = found
        if found[1] and inner is not fn:  # bound: ``self`` is not among the arguments
            return found[0], False
        return found

    def _prepare(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, str, str] | None:
        """``(record key, fingerprint, policy name)`` for this call, or ``None``: run unguarded."""
        space, skip = self._target(fn)
        fargs = args[1:] if skip else args
        if self.fingerprint is not None:
            fp = digest(self.fingerprint(*args, **kwargs))
        else:
            fp = default_fingerprint(fargs, kwargs)
        if self.key is None:
            return f"{space}:{fp}", fp, space
        key = self.key(*args, **kwargs)
        if key is None:
            return None
        if not isinstance(key, str):
            raise InvalidKey(f"idempotency key must be a str or None, got {type(key).__name__}")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidKey(
                f"idempotency key is {len(key)} characters; at most {MAX_KEY_LENGTH} are accepted"
            )
        return f"{space}:{key}", fp, space

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        prepared = self._prepare(fn, args, kwargs)
        if prepared is None:
            return fn(*args, **kwargs)
        result: R = drive_sync(self._steps(*prepared), self.clock, fn, args, kwargs)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        prepared = self._prepare(fn, args, kwargs)
        if prepared is None:
            return await fn(*args, **kwargs)
        result: R = await drive_async(self._steps(*prepared), self.clock, fn, args, kwargs)
        return result

    # -- the slow path, written once ------------------------------------------------------------

    def _steps(self, key: str, fp: str, policy: str) -> Steps[Any]:
        store = self.store if self.store is not None else default_store()
        clock = self.clock
        lease = self.lease
        async_op = None if store.local else store.abegin
        deadline: float | None = None
        poll = _FIRST_POLL
        while True:
            token = new_token()
            now = clock.monotonic()
            claim = yield Io(store.begin, async_op, key, fp, token, lease, now)
            status = claim.status
            if status is ACQUIRED:
                break
            if status is REPLAY:
                if self._events.wants(IdempotentReplay):
                    self._events.emit(IdempotentReplay(policy, key))
                return self._decode(claim.result or b"")
            if status is REUSED:
                self._conflict(policy, key, "reused")
                raise IdempotencyKeyReused(key)
            if status is not IN_PROGRESS:  # UNPROTECTED: the store is down, fail-open
                return (yield CALL)
            if deadline is None:
                deadline = now + self.wait
            remaining = deadline - now
            if remaining <= 0.0:
                self._conflict(policy, key, "in_progress")
                raise IdempotencyInProgress(key, claim.retry_after)
            yield min(poll, remaining, max(claim.retry_after, 0.001))
            poll = min(poll * 2.0, _MAX_POLL)

        keeper = self._keeper
        handle: Lease = yield Io(keeper.hold, keeper.ahold, store, key, token, lease, clock)
        try:
            result = yield CALL
        except BaseException as exc:
            yield Io(keeper.drop, keeper.adrop, handle)
            if isinstance(exc, self.store_errors):
                yield from self._finish(store, policy, key, token, encode_error(exc), "complete")
            else:  # failure, cancellation, interrupt: a retry must run again
                yield from self._finish(store, policy, key, token, None, "release")
            raise
        yield Io(keeper.drop, keeper.adrop, handle)
        try:
            payload = b"v" + self.codec.encode(result)
        except Exception:
            yield from self._finish(store, policy, key, token, None, "release")
            raise
        yield from self._finish(store, policy, key, token, payload, "complete")
        return result

    def _finish(
        self,
        store: IdempotencyStore,
        policy: str,
        key: str,
        token: str,
        payload: bytes | None,
        op: str,
    ) -> Steps[None]:
        """Complete (``payload``) or release the lease; a store failure is reported, not raised.

        The call already ran: raising now would make the caller retry a call
        whose effect happened.  A record that could not be completed stays
        in progress until its lease runs out.
        """
        now = self.clock.monotonic()
        local = store.local
        try:
            if payload is None:
                yield Io(store.release, None if local else store.arelease, key, token, now)
            else:
                yield Io(
                    store.complete,
                    None if local else store.acomplete,
                    key,
                    token,
                    payload,
                    self.ttl,
                    now,
                )
        except (StoreError, OSError) as exc:
            bus = self._events
            if bus.wants(StoreFailed):
                bus.emit(StoreFailed(policy, op, f"{type(exc).__name__}: {exc}", "dropped"))

    def _decode(self, payload: bytes) -> Any:
        kind, body = payload[:1], payload[1:]
        if kind == b"e":
            raise decode_error(body, self.store_errors)
        return self.codec.decode(body)

    def _conflict(self, policy: str, key: str, reason: str) -> None:
        bus = self._events
        if bus.wants(IdempotencyConflict):
            bus.emit(IdempotencyConflict(policy, key, reason))

    def __repr__(self) -> str:
        return (
            f"Idempotent(store={self.store!r}, ttl={self.ttl}, lease={self.lease}, "
            f"wait={self.wait})"
        )


def idempotent(
    store: IdempotencyStore | None = None,
    key: Callable[..., str | None] | None = None,
    *,
    ttl: float = 86400.0,
    lease: float = 30.0,
    fingerprint: Callable[..., str | bytes] | None = None,
    wait: float = 0.0,
    store_errors: tuple[type[BaseException], ...] = (),
    clock: Clock | None = None,
    codec: Codec | None = None,
    name: str | None = None,
    events: EventBus | None = None,
) -> Idempotent:
    """Run a function (sync, async or a method) once per idempotency key; replay the result.

    ``key(*args, **kwargs) -> str | None`` names the operation (``None``: run
    without idempotency); by default the key is the arguments' fingerprint,
    so identical calls are deduplicated.  Keys are scoped by ``name``
    (default: the function's module and qualified name).  ``fingerprint``
    tells two uses of one key apart (default: a SHA-256 of the canonical
    JSON of the arguments, ``self`` excluded); another fingerprint raises
    :class:`~resilience.errors.IdempotencyKeyReused`.  A call while the first
    one runs waits up to ``wait`` seconds for its result, then raises
    :class:`~resilience.errors.IdempotencyInProgress`.  Results are kept for
    ``ttl`` seconds, encoded by ``codec`` (JSON by default); exceptions
    listed in ``store_errors`` are kept and re-raised too, any other
    exception (or a cancellation) releases the key.  ``lease``: how long a
    crashed owner blocks the key; a live owner renews it every ``lease / 3``.
    """
    return Idempotent(
        store,
        key,
        ttl=ttl,
        lease=lease,
        fingerprint=fingerprint,
        wait=wait,
        store_errors=store_errors,
        clock=clock,
        codec=codec,
        name=name,
        events=events,
    )
