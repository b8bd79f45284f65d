"""Request id and principal bound in structlog's contextvars for the length of a request.

Shared by ``resilience.asgi.LogContextMiddleware`` and
``resilience.aiohttp.log_context_middleware`` (opt-in: add the middleware
outermost).  Every log line and resilience event logged while the request
runs (``StructlogSink``, your own ``structlog`` calls) then carries
``request_id`` and ``principal``, provided structlog's processors include
``structlog.contextvars.merge_contextvars`` (structlog's default does).

The request id is the client's ``X-Request-ID`` when it is printable ASCII
of at most 128 characters, else a fresh random one; it is echoed in the
response.  The principal is whatever your ``principal`` callable returns (a
user id, an API key), and it is logged only as a keyed BLAKE2b digest, as
``resilience.web.request_keys`` does for header keys: log pipelines are read by many
people and a credential must not appear there.  Pass
``hash_principal=False`` for values that are not secret (a tenant name).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from resilience.web.request_keys import DEFAULT_HASHER, KeyHasher, clean_header_value, clean_key

__all__ = ["LogContext", "MAX_REQUEST_ID"]

MAX_REQUEST_ID = 128
Request = TypeVar("Request")


class LogContext(Generic[Request]):
    """What to bind for one request: its id and its (hashed) principal."""

    __slots__ = ("_hasher", "header", "principal")

    def __init__(
        self,
        *,
        header: str = "X-Request-ID",
        principal: Callable[[Request], object] | None = None,
        hash_principal: bool = True,
        hash_key: bytes | str | None = None,
    ) -> None:
        if not isinstance(header, str) or not header or not header.isascii() or " " in header:
            raise ValueError(f"header must be an HTTP header name, got {header!r}")
        if principal is not None and not callable(principal):
            raise ValueError(
                f"principal must be callable(request) -> str | None, got {principal!r}"
            )
        if not isinstance(hash_principal, bool):
            raise ValueError(f"hash_principal must be True or False, got {hash_principal!r}")
        if not hash_principal and hash_key is not None:
            raise ValueError("hash_key applies to hashed principals only; drop it")
        self.header = header.lower()
        self.principal = principal
        self._hasher: KeyHasher | None = (
            None
            if not hash_principal
            else DEFAULT_HASHER
            if hash_key is None
            else KeyHasher(hash_key)
        )

    def request_id(self, raw: str | None) -> str:
        """The client's id when usable, else a fresh one (never raises on client input)."""
        cleaned = clean_header_value(raw, MAX_REQUEST_ID)
        return cleaned if cleaned is not None else uuid.uuid4().hex

    def fields(self, request: Request, raw_request_id: str | None) -> dict[str, str]:
        """The context to bind: ``request_id``, and ``principal`` when there is one."""
        bound = {"request_id": self.request_id(raw_request_id)}
        if self.principal is not None:
            value = clean_key(self.principal(request))
            if value is not None:
                hasher = self._hasher
                bound["principal"] = value if hasher is None else f"#{hasher.digest(value)}"
        return bound
