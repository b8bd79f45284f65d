"""Idempotency keys: exactly-once effects over at-least-once delivery.

``@idempotent`` runs a function once per key and replays its stored result
to every retry; the HTTP middleware (``resilience.asgi`` /
``resilience.aiohttp``) does the same for requests.  Records live in a
store: :class:`MemoryIdempotencyStore` (one process),
:class:`SQLiteIdempotencyStore` (one host, durable) or
``resilience.redis.RedisIdempotencyStore`` (many hosts).  See
``docs/idempotency.md``.
"""

from resilience.idempotency.codec import Codec, JsonCodec, StoredError
from resilience.idempotency.decorator import Idempotent, idempotent
from resilience.idempotency.memory import MemoryIdempotencyStore
from resilience.idempotency.record import Claim, ClaimStatus, Record
from resilience.idempotency.store import IdempotencyStore

__all__ = [
    "Claim",
    "ClaimStatus",
    "Codec",
    "IdempotencyStore",
    "Idempotent",
    "JsonCodec",
    "MemoryIdempotencyStore",
    "Record",
    "StoredError",
    "idempotent",
]
