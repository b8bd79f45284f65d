"""How results and call arguments become bytes: a safe codec and a stable fingerprint.

Results from a shared store are decoded with a codec that can only build
data (JSON by default), never with ``pickle``: whoever can write to Redis or
the SQLite file must not be able to run code in every reader.  A stored
record is an envelope: ``b"v"`` + the codec's bytes for a value, or
``b"e"`` + JSON ``{"type", "args"}`` for an exception listed in
``store_errors`` (rebuilt only as one of those listed classes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from resilience.errors import ResilienceError

__all__ = [
    "Codec",
    "JsonCodec",
    "StoredError",
    "decode_error",
    "default_fingerprint",
    "digest",
    "encode_error",
]


@runtime_checkable
class Codec(Protocol):
    """Turns a result into bytes and back.  ``decode`` must never run code (no pickle)."""

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class JsonCodec:
    """JSON-compatible values: dicts with str keys, lists, str, int, float, bool, None.

    A replay gets the JSON form: a tuple comes back as a list.  ``NaN`` and
    infinities are refused (JSON has none), as is anything else JSON cannot
    hold, with a ``TypeError`` or ``ValueError`` naming it.
    """

    __slots__ = ()

    def encode(self, value: Any) -> bytes:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)

    def __repr__(self) -> str:
        return "JsonCodec()"


class StoredError(ResilienceError):
    """A stored exception whose class is no longer in ``store_errors``: its type name and text."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


def _qualified(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def encode_error(exc: BaseException) -> bytes:
    """The envelope for an exception the function raised and ``store_errors`` keeps."""
    args: list[Any] = list(exc.args)
    try:
        body = json.dumps({"type": _qualified(type(exc)), "args": args}, allow_nan=False)
    except (TypeError, ValueError):
        body = json.dumps({"type": _qualified(type(exc)), "args": [str(exc)]})
    return b"e" + body.encode()


def decode_error(data: bytes, allowed: tuple[type[BaseException], ...]) -> BaseException:
    """Rebuild a stored exception, as one of the ``allowed`` classes only."""
    body = json.loads(data)
    name = str(body.get("type", "?"))
    args = body.get("args", [])
    for cls in allowed:
        if _qualified(cls) == name:
            try:
                return cls(*args)
            except Exception:  # the constructor changed since: keep the text
                break
    return StoredError(name, " ".join(str(a) for a in args))


def _canonical(value: Any) -> Any:
    """``json.dumps`` fallback: a stable form for common non-JSON argument types."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__bytes__": bytes(value).hex()}
    if isinstance(value, set | frozenset):
        return {"__set__": sorted(json.dumps(v, sort_keys=True, default=_canonical) for v in value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": type(value).__qualname__, **dataclasses.asdict(value)}
    if hasattr(value, "model_dump"):  # pydantic models
        return {"__model__": type(value).__qualname__, **value.model_dump(mode="json")}
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    raise TypeError(
        f"cannot fingerprint an argument of type {type(value).__qualname__}: pass "
        "fingerprint=callable(*args, **kwargs) -> str | bytes to @idempotent"
    )


def default_fingerprint(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A stable SHA-256 of the call's arguments (canonical JSON), the same in every process."""
    text = json.dumps(
        [args, kwargs], sort_keys=True, default=_canonical, separators=(",", ":"), allow_nan=True
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def digest(value: str | bytes) -> str:
    """A user fingerprint as the fixed-size hex string stores compare."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    elif not isinstance(value, bytes | bytearray):
        raise TypeError(f"fingerprint must return str or bytes, got {type(value).__qualname__}")
    return hashlib.sha256(value).hexdigest()


FingerprintFn = Callable[..., str | bytes]
