"""The HTTP side of idempotency keys, with no web framework imported.

``IdempotencyCore`` holds what the ASGI and aiohttp middlewares share: key
validation (draft-ietf-httpapi-idempotency-key-header: a String; unquoted
keys as Stripe sends them are accepted too), the request fingerprint
(method, path, query, content type and the body's SHA-256), the record key
(per principal, method and path, so one client can never replay another's
response), which statuses are stored, the stored response's format, and the
problem+json answers (400, 409, 413, 422, 503).

A stored response is a length-prefixed binary envelope (status, headers,
body) parsed by plain slicing: nothing in a shared store can make a reader
run code.  Responses whose body outgrew ``max_body`` (or that a framework
streamed where the middleware cannot see the bytes) are recorded as
*not replayable*: a retry gets 409 with ``original-status`` and no
``Retry-After`` rather than running the request a second time.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from resilience import _validate
from resilience.clock import Clock, resolve_clock
from resilience.errors import StoreError
from resilience.events import (
    EventBus,
    IdempotencyConflict,
    IdempotentReplay,
    StoreFailed,
    resolve_bus,
)
from resilience.idempotency.decorator import default_store
from resilience.idempotency.record import (
    ACQUIRED,
    IN_PROGRESS,
    REPLAY,
    REUSED,
    Claim,
    new_token,
)
from resilience.idempotency.renewal import KEEPER, Lease
from resilience.idempotency.store import IdempotencyStore
from resilience.web.headers import retry_after_seconds
from resilience.web.problem import problem

__all__ = [
    "MAX_KEY_LENGTH",
    "IdempotencyCore",
    "Stored",
    "decode_response",
    "encode_response",
]

MAX_KEY_LENGTH: Final = 255
NOT_STORED: Final = frozenset({408, 409, 425, 429})
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"set-cookie",  # another client's session must never be replayed
    }
)
REPLAYED: Final = (b"idempotent-replayed", b"true")
_PROBLEM = "https://www.rfc-editor.org/rfc/rfc9110#name-"  # status sections
_FULL = b"R"
_TRUNCATED = b"T"
_START = struct.Struct(">HH")
_HEADER = struct.Struct(">HI")
_PRINTABLE = re.compile(rb"[\x20-\x7e]+").fullmatch
_DECODED: dict[bytes, Stored] = {}  # recent replays, parsed once (small bodies only)
_DECODED_MAX = 128
_DECODED_BODY = 16_384
_SCOPES: dict[tuple[str | None, str, str], str] = {}  # (principal, method, path) -> digest
_SCOPES_MAX = 4096
_SCOPE_CHARS = 512  # longer principals and paths are hashed each time: the cache stays small
_POLL_FIRST = 0.01
_POLL_MAX = 0.5

Headers = list[tuple[bytes, bytes]]


def storable(status: int) -> bool:
    """Stored for replay: below 500, except 408, 409, 425 and 429 (worth retrying for real)."""
    return status < 500 and status not in NOT_STORED


def encode_response(status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    """``R`` + status + headers (hop-by-hop and ``Set-Cookie`` left out) + body, length-prefixed."""
    parts = [_FULL, b""]
    append = parts.append
    pack = _HEADER.pack
    count = 0
    for name, value in headers:
        if name.lower() in HOP_BY_HOP:
            continue
        append(pack(len(name), len(value)))
        append(name)
        append(value)
        count += 1
    parts[1] = _START.pack(status, count)
    append(body)
    return b"".join(parts)


def encode_truncated(status: int) -> bytes:
    """The record of a response that cannot be replayed (too large, or streamed unseen)."""
    return _TRUNCATED + struct.pack(">H", status)


class Stored:
    """A decoded stored response; ``replayable`` False for the too-large marker."""

    __slots__ = ("body", "headers", "replayable", "status")

    def __init__(self, status: int, headers: Headers, body: bytes, replayable: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.replayable = replayable


def decode_response(data: bytes) -> Stored:
    """Parse :func:`encode_response`'s envelope (or the not-replayable marker).

    Small envelopes are remembered (a bounded dict keyed by the bytes, whose
    hash Python caches): a key replayed again and again is parsed once.
    """
    found = _DECODED.get(data)
    if found is not None:
        return found
    stored = _parse(data)
    if len(data) <= _DECODED_BODY:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[data] = stored
    return stored


def _parse(data: bytes) -> Stored:
    kind = data[:1]
    if kind == _TRUNCATED:
        (status,) = struct.unpack_from(">H", data, 1)
        return Stored(status, [], b"", False)
    if kind != _FULL:
        raise ValueError("not a stored HTTP response")
    status, count = struct.unpack_from(">HH", data, 1)
    at = 5
    headers: Headers = []
    for _ in range(count):
        name_len, value_len = struct.unpack_from(">HI", data, at)
        at += 6
        name = data[at : at + name_len]
        at += name_len
        headers.append((name, data[at : at + value_len]))
        at += value_len
    return Stored(status, headers, data[at:], True)


class Refusal:
    """An answer the middleware sends itself: status, extra headers, problem+json body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.status = status
        self.body = body
        self.headers = list(headers)


def _problem(status: int, title: str, detail: str, policy: str, **extra: Any) -> bytes:
    body = problem(f"{_PROBLEM}{status}", title, status, detail, policy)
    if not extra:
        return body
    import json

    document = json.loads(body)
    document.update(extra)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class IdempotencyCore:
    """What both middlewares do, given the request's parts; see ``docs/idempotency.md``."""

    __slots__ = (
        "_events",
        "_missing",
        "_store",
        "clock",
        "header",
        "header_bytes",
        "lease",
        "max_body",
        "methods",
        "name",
        "principal",
        "required",
        "ttl",
        "wait",
    )

    def __init__(
        self,
        store: IdempotencyStore | None = None,
        *,
        methods: Iterable[str] = ("POST", "PATCH"),
        header: str = "Idempotency-Key",
        required: bool = False,
        principal: Callable[[Any], str | None] | None = None,
        ttl: float = 86400.0,
        lease: float = 30.0,
        wait: float = 0.0,
        max_body: int = 1_048_576,
        clock: Clock | None = None,
        name: str = "idempotency",
        events: EventBus | None = None,
    ) -> None:
        if store is not None and not isinstance(store, IdempotencyStore):
            raise ValueError(f"store must be an idempotency store, got {store!r}")
        if isinstance(methods, str):
            raise ValueError(f"methods must be a collection of method names, got {methods!r}")
        chosen = frozenset(m.upper() for m in methods)
        if not chosen or not all(isinstance(m, str) and m.isalpha() for m in chosen):
            raise ValueError(f"methods must be non-empty HTTP method names, got {methods!r}")
        if not isinstance(header, str) or not header or not header.isascii() or " " in header:
            raise ValueError(f"header must be an HTTP header name, got {header!r}")
        if not isinstance(required, bool):
            raise ValueError(f"required must be a bool, got {required!r}")
        _validate.callable_or_none(principal, "principal", what="callable(request) -> str | None")
        _validate.whole_number(max_body, "max_body", minimum=0)
        self._store = store
        self.methods = chosen
        self.header = header
        self.header_bytes = header.lower().encode("ascii")
        self.required = required
        self.principal = principal
        self.ttl = _validate.positive_seconds(ttl, "ttl")
        self.lease = _validate.positive_seconds(lease, "lease")
        self.wait = _validate.non_negative_number(wait, "wait", unit="number of seconds")
        self.max_body = max_body
        self.clock = resolve_clock(clock)
        self.name = name
        self._events = resolve_bus(events)
        self._missing = Refusal(
            400,
            _problem(
                400,
                "Bad Request",
                f"This request needs an {header} header (a unique key per operation).",
                name,
            ),
        )

    @property
    def store(self) -> IdempotencyStore:
        return self._store if self._store is not None else default_store()

    # -- the request ----------------------------------------------------------------------

    def check_key(self, values: Sequence[bytes]) -> tuple[str | None, Refusal | None]:
        """The key from the header's values: ``(key, None)``, ``(None, None)`` to pass through,
        or ``(None, refusal)`` for a missing required, empty, long or non-ASCII key."""
        if not values:
            return None, (self._missing if self.required else None)
        if len(values) > 1:
            return None, self._bad("more than one value was sent")
        raw = values[0].strip(b" \t")
        if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
            raw = raw[1:-1]  # the draft's String form
        if not raw:
            return None, self._bad("the key is empty")
        if len(raw) > MAX_KEY_LENGTH:
            return None, self._bad(f"the key is longer than {MAX_KEY_LENGTH} characters")
        if _PRINTABLE(raw) is None:
            return None, self._bad("the key must be printable ASCII")
        return raw.decode("ascii"), None

    def _bad(self, reason: str) -> Refusal:
        detail = f"The {self.header} header is unusable: {reason}."
        return Refusal(400, _problem(400, "Bad Request", detail, self.name))

    def too_large(self) -> Refusal:
        detail = (
            f"Requests with an {self.header} are limited to {self.max_body} bytes of body "
            "(they are hashed to recognise a reused key)."
        )
        return Refusal(413, _problem(413, "Content Too Large", detail, self.name))

    def unavailable(self) -> Refusal:
        detail = (
            "The idempotency store cannot be reached, so the request was not run "
            "(running it unrecorded could run it twice); retry later."
        )
        return Refusal(
            503,
            _problem(503, "Service Unavailable", detail, self.name),
            [("Retry-After", "1")],
        )

    @staticmethod
    def fingerprint(method: str, path: str, query: bytes, content_type: bytes, body: bytes) -> str:
        """SHA-256 over method, path, query, content type and body.

        None of the first four can hold a newline (HTTP forbids it), so the
        newline-joined prefix followed by the body is unambiguous.
        """
        digest = hashlib.sha256(
            b"%s\n%s\n%s\n%s\n"
            % (method.encode(), path.encode("utf-8", "surrogateescape"), query, content_type)
        )
        digest.update(body)
        return digest.hexdigest()

    @staticmethod
    def record_key(principal: str | None, method: str, path: str, key: str) -> str:
        """Records are per principal, method and path: one client never sees another's."""
        found = _SCOPES.get((principal, method, path))
        if found is not None:
            return f"http:{found}:{key}"
        scope = hashlib.sha256(
            b"%s\n%s\n%s"
            % (
                (principal or "").encode("utf-8", "surrogateescape"),
                method.encode(),
                path.encode("utf-8", "surrogateescape"),
            )
        ).hexdigest()[:32]
        if len(path) + len(principal or "") <= _SCOPE_CHARS:
            if len(_SCOPES) >= _SCOPES_MAX:
                _SCOPES.clear()
            _SCOPES[(principal, method, path)] = scope
        return f"http:{scope}:{key}"

    # -- taking the lease -----------------------------------------------------------------

    async def claim(self, key: str, fp: str) -> tuple[Claim | Refusal | Stored, str]:
        """Take the lease (waiting up to ``wait``), or the answer to send instead.

        Returns ``(Claim(ACQUIRED or UNPROTECTED), token)``, ``(Stored, "")``
        for a replay, or ``(Refusal, "")`` for 409, 422 and 503.
        """
        store = self.store
        clock = self.clock
        deadline: float | None = None
        poll = _POLL_FIRST
        while True:
            token = new_token()
            now = clock.monotonic()
            try:
                if store.local:
                    found = store.begin(key, fp, token, self.lease, now)
                else:
                    found = await store.abegin(key, fp, token, self.lease, now)
            except StoreError as exc:  # outage (fail_closed) or a memory store full of leases
                self._store_failed("begin", exc, "refused")
                return self.unavailable(), ""
            status = found.status
            if status is ACQUIRED:
                return found, token
            if status is REPLAY:
                stored = decode_response(found.result or b"")
                if not stored.replayable:
                    return self._not_replayable(stored.status), ""
                if self._events.wants(IdempotentReplay):
                    self._events.emit(IdempotentReplay(self.name, key))
                return stored, ""
            if status is REUSED:
                self._conflict(key, "reused")
                detail = (
                    f"This {self.header} was already used with a different request "
                    "(query, content type or body; records are per method and path)."
                )
                return Refusal(422, _problem(422, "Unprocessable Content", detail, self.name)), ""
            if status is not IN_PROGRESS:  # UNPROTECTED: fail-open store outage
                return found, ""
            if deadline is None:
                deadline = now + self.wait
            remaining = deadline - now
            if remaining <= 0.0:
                self._conflict(key, "in_progress")
                seconds = retry_after_seconds(found.retry_after) or 1
                detail = (
                    f"A request with this {self.header} is still being processed; "
                    "retry after the number of seconds in Retry-After."
                )
                return Refusal(
                    409,
                    _problem(409, "Conflict", detail, self.name),
                    [("Retry-After", str(seconds))],
                ), ""
            await _asleep(clock, min(poll, remaining, max(found.retry_after, 0.001)))
            poll = min(poll * 2.0, _POLL_MAX)

    def _not_replayable(self, status: int) -> Refusal:
        detail = (
            f"A request with this {self.header} was already processed (status {status}), but "
            f"its response was larger than {self.max_body} bytes or streamed, so it was not "
            "kept; it will not be run again."
        )
        return Refusal(
            409, _problem(409, "Conflict", detail, self.name, **{"original-status": status})
        )

    def _conflict(self, key: str, reason: str) -> None:
        if self._events.wants(IdempotencyConflict):
            self._events.emit(IdempotencyConflict(self.name, key, reason))

    async def hold(self, key: str, token: str) -> Lease:
        return await KEEPER.ahold(self.store, key, token, self.lease, self.clock)

    async def finish(self, lease: Lease, key: str, token: str, payload: bytes | None) -> None:
        """Stop renewing, then complete with ``payload`` or release (``None``); never raises."""
        await KEEPER.adrop(lease)
        store = self.store
        now = self.clock.monotonic()
        try:
            if payload is None:
                if store.local:
                    store.release(key, token, now)
                else:
                    await store.arelease(key, token, now)
            elif store.local:
                store.complete(key, token, payload, self.ttl, now)
            else:
                await store.acomplete(key, token, payload, self.ttl, now)
        except Exception as exc:  # the response is already on its way: report, never raise
            lease.failures += 1
            self._store_failed("release" if payload is None else "complete", exc, "dropped")

    def _store_failed(self, operation: str, exc: Exception, action: str) -> None:
        bus = self._events
        if bus.wants(StoreFailed):
            bus.emit(StoreFailed(self.name, operation, f"{type(exc).__name__}: {exc}", action))


async def _asleep(clock: Clock, seconds: float) -> None:
    from resilience.clock import sleep_async

    await sleep_async(clock, seconds)
