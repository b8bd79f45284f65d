"""``idempotency_middleware``: Idempotency-Key for aiohttp, the same rules as the ASGI one.

The handler's ``web.Response`` (status, headers, body) is stored and
replayed byte for byte with ``Idempotent-Replayed: true``.  A response the
middleware cannot see whole (a ``StreamResponse`` the handler wrote itself,
a file) or one larger than ``max_body`` is recorded as not replayable: a
retry gets 409 with ``original-status`` instead of running again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from resilience.aiohttp._common import problem_response
from resilience.clock import Clock
from resilience.events import EventBus
from resilience.idempotency.store import IdempotencyStore
from resilience.web.idempotency import (
    IdempotencyCore,
    Refusal,
    Stored,
    encode_response,
    encode_truncated,
    storable,
)

__all__ = ["idempotency_middleware"]


def _refusal(refusal: Refusal) -> web.Response:
    return problem_response(refusal.status, refusal.body, refusal.headers)


def _payload(response: web.StreamResponse, limit: int) -> bytes | None:
    """What to store for ``response``, or ``None`` to release the key."""
    status = response.status
    if not storable(status):
        return None
    if not isinstance(response, web.Response):
        return encode_truncated(status)  # streamed by the handler: the bytes were never seen
    body = b"" if response.body is None else response.body  # None: no body (a 204, say)
    if not isinstance(body, bytes) or len(body) > limit:
        return encode_truncated(status)
    try:  # the bytes aiohttp writes: it sends header values as UTF-8
        headers = [(_wire(name.lower()), _wire(value)) for name, value in response.headers.items()]
    except UnicodeEncodeError:  # a lone surrogate: aiohttp could not send it either
        return encode_truncated(status)
    return encode_response(status, headers, body)


def _wire(text: str) -> bytes:
    """A header as the bytes on the wire: aiohttp parses them as UTF-8 (surrogateescape)
    and writes them as UTF-8, so this is exact both ways."""
    return text.encode("utf-8", "surrogateescape")


def _text(value: bytes) -> str:
    """A stored header value as aiohttp must be given it to write these bytes again."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:  # not UTF-8 (stored by an ASGI server sharing the store)
        return value.decode("latin-1")


def _replay(stored: Stored) -> web.Response:
    response = web.Response(status=stored.status, body=stored.body)
    headers = response.headers
    headers.popall("Content-Type", None)
    for name, value in stored.headers:
        if name != b"content-length":
            headers.add(_text(name), _text(value))
    headers["Idempotent-Replayed"] = "true"
    return response


def idempotency_middleware(
    store: IdempotencyStore | None = None,
    *,
    methods: Iterable[str] = ("POST", "PATCH"),
    header: str = "Idempotency-Key",
    required: bool = False,
    principal: Callable[[web.Request], str | None] | None = None,
    ttl: float = 86400.0,
    lease: float = 30.0,
    wait: float = 0.0,
    max_body: int = 1_048_576,
    clock: Clock | None = None,
    events: EventBus | None = None,
    name: str = "idempotency",
) -> Middleware:
    """Run each (principal, method, path, Idempotency-Key) once; replay its response.

    The same options as ``resilience.asgi.IdempotencyMiddleware``;
    ``principal(request) -> str | None``.
    """
    core = IdempotencyCore(
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

    @web.middleware
    async def idempotency_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method
        if method not in core.methods:
            return await handler(request)
        values = [_wire(v) for v in request.headers.getall(core.header, ())]
        key, refusal = core.check_key(values)
        if refusal is not None:
            return _refusal(refusal)
        if key is None:
            return await handler(request)
        length = request.content_length
        if length is not None and length > core.max_body:
            return _refusal(core.too_large())
        try:
            body = await request.read()  # cached: the handler reads it again for free
        except web.HTTPRequestEntityTooLarge:
            return _refusal(core.too_large())
        if len(body) > core.max_body:
            return _refusal(core.too_large())
        path = request.path
        who = core.principal(request) if core.principal is not None else None
        record = core.record_key(who, method, path, key)
        content_type = _wire(request.headers.get("Content-Type", ""))
        query = request.query_string.encode("latin-1", "replace")
        fp = core.fingerprint(method, path, query, content_type, body)
        answer, token = await core.claim(record, fp)
        if isinstance(answer, Stored):
            return _replay(answer)
        if isinstance(answer, Refusal):
            return _refusal(answer)
        if not token:  # fail-open store outage: run unrecorded
            return await handler(request)
        lease = await core.hold(record, token)
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # raised responses count like returned ones
            await core.finish(lease, record, token, _payload(exc, core.max_body))
            raise
        except BaseException:
            await core.finish(lease, record, token, None)
            raise
        await core.finish(lease, record, token, _payload(response, core.max_body))
        return response

    return idempotency_guard
