"""``IdempotencyMiddleware``: Idempotency-Key for any ASGI app (pure ASGI, no framework).

The first request with a key runs the app and its response is stored (when
complete and its status is storable); a retry with the same key and the
same request gets that response byte for byte plus ``Idempotent-Replayed:
true``, and the app does not run.  See ``resilience.web.idempotency`` for
the shared rules and ``docs/idempotency.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from resilience.asgi._asgi import ASGIApp, Message, Receive, Scope, Send, send_problem
from resilience.clock import Clock
from resilience.events import EventBus
from resilience.idempotency.record import Claim
from resilience.idempotency.store import IdempotencyStore
from resilience.web.idempotency import (
    REPLAYED,
    IdempotencyCore,
    Refusal,
    Stored,
    encode_response,
    encode_truncated,
    storable,
)

__all__ = ["IdempotencyMiddleware"]

_START = "http.response.start"
_BODY = "http.response.body"


class _Recorder:
    """Forwards the response and keeps a copy (up to ``limit`` bytes of body)."""

    __slots__ = ("_send", "chunks", "complete", "headers", "limit", "size", "status", "truncated")
    headers: Any

    def __init__(self, send: Send, limit: int) -> None:
        self._send = send
        self.limit = limit
        self.status = 0
        self.headers = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.complete = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == _START:
            self.status = message["status"]
            self.headers = message.get("headers", [])
        elif kind == _BODY:
            chunk = message.get("body", b"")
            if chunk and not self.truncated:
                self.size += len(chunk)
                if self.size > self.limit:
                    self.truncated = True
                    self.chunks = []
                else:
                    self.chunks.append(chunk)
            if not message.get("more_body", False):
                self.complete = True
        await self._send(message)  # recorded first: a response the client missed is still kept

    def payload(self) -> bytes | None:
        """What to store, or ``None`` to release the key."""
        if not self.complete or not storable(self.status):
            return None
        if self.truncated:
            return encode_truncated(self.status)
        return encode_response(self.status, self.headers, b"".join(self.chunks))


class IdempotencyMiddleware:
    """Run each (principal, method, path, Idempotency-Key) once; replay its response.

    Options as DESIGN.md section 3.5: ``methods`` checked, the ``header``
    name, ``required`` (400 without it), ``principal(scope) -> str | None``
    (records are per principal), ``ttl``, ``lease``, ``wait`` (seconds a
    duplicate waits for the first before 409), ``max_body`` (bytes: larger
    requests get 413; larger responses are not replayed, see the docs).
    """

    __slots__ = ("app", "core")

    def __init__(
        self,
        app: ASGIApp,
        store: IdempotencyStore | None = None,
        *,
        methods: Iterable[str] = ("POST", "PATCH"),
        header: str = "Idempotency-Key",
        required: bool = False,
        principal: Callable[[Scope], str | None] | None = None,
        ttl: float = 86400.0,
        lease: float = 30.0,
        wait: float = 0.0,
        max_body: int = 1_048_576,
        clock: Clock | None = None,
        events: EventBus | None = None,
        name: str = "idempotency",
    ) -> None:
        if not callable(app):
            raise ValueError(f"app must be an ASGI application, got {app!r}")
        self.app = app
        self.core = IdempotencyCore(
            store,
            methods=methods,
            header=header,
            required=required,
            principal=principal,
            ttl=ttl,
            lease=lease,
            wait=wait,
            max_body=max_body,
            clock=clock,
            name=name,
            events=events,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        core = self.core
        if scope["type"] != "http" or scope["method"] not in core.methods:
            await self.app(scope, receive, send)
            return
        wanted = core.header_bytes
        content_type = b""
        values = []
        length = -1
        for name, value in scope["headers"]:
            if name == wanted:
                values.append(value)
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
        key, refusal = core.check_key(values)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        if key is None:
            await self.app(scope, receive, send)
            return
        if length > core.max_body:
            await _refuse(send, core.too_large())
            return
        try:
            body = await _read_body(receive, core.max_body)
        except _TooLarge:
            await _refuse(send, core.too_large())
            return
        if body is None:  # the client went away before the request was complete
            return
        method = scope["method"]
        path = scope.get("path", "")
        who = core.principal(scope) if core.principal is not None else None
        record = core.record_key(who, method, path, key)
        fp = core.fingerprint(method, path, scope.get("query_string", b""), content_type, body)
        answer, token = await core.claim(record, fp)
        if isinstance(answer, Stored):
            await _replay(send, answer)
            return
        if isinstance(answer, Refusal):
            await _refuse(send, answer)
            return
        replay_receive = _body_then(body, receive)
        if not token:  # fail-open store outage: run unrecorded
            await self.app(scope, replay_receive, send)
            return
        assert isinstance(answer, Claim)
        lease = await core.hold(record, token)
        recorder = _Recorder(send, core.max_body)
        try:
            await self.app(scope, replay_receive, recorder.send)
        except BaseException:
            await core.finish(lease, record, token, recorder.payload())
            raise
        await core.finish(lease, record, token, recorder.payload())

    def __repr__(self) -> str:
        return f"IdempotencyMiddleware({self.app!r}, store={self.core.store!r})"


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` on disconnect; raises ``_TooLarge`` past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _body_then(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the body already read, then the real receive (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, refusal: Refusal) -> None:
    headers = [(n.lower().encode(), v.encode()) for n, v in refusal.headers]
    await send_problem(send, refusal.status, refusal.body, headers)


async def _replay(send: Send, stored: Stored) -> None:
    await send({"type": _START, "status": stored.status, "headers": [*stored.headers, REPLAYED]})
    await send({"type": _BODY, "body": stored.body, "more_body": False})
