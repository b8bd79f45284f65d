"""Idempotency-Key middleware: cost per request in process, and round trips on Redis.

In process (DESIGN.md section 5: first request <= +30 us, replay <= +20 us,
1 KiB body, hashing included): a raw ASGI app that reads a 1 KiB request
body and answers 1 KiB, bare and behind ``IdempotencyMiddleware`` with a
``MemoryIdempotencyStore``, driven directly through ASGI (no sockets).  A
"first request" carries a fresh key each time (the store runs at its
``max_keys`` bound, so eviction is included); a replay repeats one key.
The bare app gets the same scopes (with the key header it ignores).  The
three cases are measured in turns (``interleave``).

On Redis (bar: 2 round trips for a first request, 1 for a replay): the
round trips are counted by the server (``INFO commandstats``: ``EVALSHA``
and ``EVAL`` calls per request), and each request is timed against an
async ``PING`` on the same client, call by call, interleaved.

Run: ``python -m benchmarks idempotency``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

from benchmarks._harness import Timing, interleave, time_async
from resilience import MemoryIdempotencyStore
from resilience.asgi import IdempotencyMiddleware
from resilience.events import EventBus

Row = dict[str, Any]
FIRST_BAR_US = 30.0
REPLAY_BAR_US = 20.0
KIB = b"x" * 1024
RESPONSE_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
BASE_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"bench"),
    (b"content-type", b"application/json"),
    (b"content-length", b"1024"),
]
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/orders",
    "raw_path": b"/orders",
    "root_path": "",
    "query_string": b"",
    "client": ("10.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
REQUEST: dict[str, Any] = {"type": "http.request", "body": KIB, "more_body": False}


async def receive() -> dict[str, Any]:
    return REQUEST


async def discard(message: dict[str, Any]) -> None:
    return None


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 201, "headers": RESPONSE_HEADERS})
    await send({"type": "http.response.body", "body": KIB})


def requester(app: Any, fresh: bool) -> Callable[[], Coroutine[Any, Any, None]]:
    """One request per call: a fresh key each time, or always the same one."""
    counter = itertools.count()

    async def request() -> None:
        key = b"%d" % next(counter) if fresh else b"replayed-key"
        headers = [*BASE_HEADERS, (b"idempotency-key", key)]
        await app({**SCOPE, "headers": headers}, receive, discard)

    return request


def _check(app: Any) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def once() -> None:
        headers = [*BASE_HEADERS, (b"idempotency-key", b"check")]
        await app({**SCOPE, "headers": headers}, receive, send)

    asyncio.run(once())
    if sent[0].get("status") != 201 or sent[1].get("body") != KIB:
        raise AssertionError(f"benchmark premise failed: {app!r} answered {sent[:1]}")


def in_process() -> list[Row]:
    middleware = IdempotencyMiddleware(
        bare_app, MemoryIdempotencyStore(max_keys=10_000), events=EventBus()
    )
    _check(bare_app)
    _check(middleware)
    cases: dict[str, Callable[[], Timing]] = {
        "bare ASGI app (1 KiB in, 1 KiB out)": lambda: time_async(
            requester(bare_app, True), repeat=5, target=0.1
        ),
        "IdempotencyMiddleware, first request (fresh key)": lambda: time_async(
            requester(middleware, True), repeat=5, target=0.1
        ),
        "IdempotencyMiddleware, replay (same key)": lambda: time_async(
            requester(middleware, False), repeat=5, target=0.1
        ),
    }
    timings = interleave(cases, passes=3)
    table = "Idempotency middleware in process, memory store, per request"
    base = next(iter(timings.values()))
    rows: list[Row] = []
    for name, timing in timings.items():
        added = (timing.min_ns - base.min_ns) / 1000
        row: Row = {
            "table": table,
            "name": name,
            "us_per_request": timing.min_ns / 1000,
            "us median": timing.median_ns / 1000,
            "+us vs bare": added,
        }
        if "first" in name:
            row["bar"] = f"<= +{FIRST_BAR_US:g} us"
            row["result"] = "PASS" if added <= FIRST_BAR_US else "FAIL"
        elif "replay" in name:
            row["bar"] = f"<= +{REPLAY_BAR_US:g} us"
            row["result"] = "PASS" if added <= REPLAY_BAR_US else "FAIL"
        rows.append(row)
    return rows


def _scripts_run(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def on_redis(url: str) -> list[Row]:
    import redis

    from benchmarks.bench_redis import paired_async
    from resilience.redis import RedisIdempotencyStore

    store = RedisIdempotencyStore.from_url(url, timeout=1.0)
    middleware = IdempotencyMiddleware(bare_app, store, events=EventBus())
    counter = redis.Redis.from_url(url)
    ping = store.store.async_client.ping
    first, replay = requester(middleware, True), requester(middleware, False)
    await replay()  # loads the scripts and stores the replayed key
    table = "Idempotency middleware on Redis: round trips per request and time x async PING"
    rows: list[Row] = []
    for name, request, bar in (
        ("first request (fresh key)", first, 2),
        ("replay (same key)", replay, 1),
    ):
        before = _scripts_run(counter)
        for _ in range(200):
            await request()
        trips = (_scripts_run(counter) - before) / 200
        paired = await paired_async(ping, request)
        row = paired.row(table, name, bar=False)
        row.update(
            {
                "round_trips": trips,
                "bar": f"{bar} round trip{'s' if bar > 1 else ''}",
                "result": "PASS" if trips == bar else "FAIL",
            }
        )
        rows.append(row)
    counter.flushall()
    counter.close()
    await store.aclose()
    return rows


def run() -> list[Row]:
    from benchmarks.bench_redis import redis_url

    rows = in_process()
    try:
        with redis_url() as url:
            rows.extend(asyncio.run(on_redis(url)))
    except FileNotFoundError as exc:  # no redis-server: report the in-process table alone
        rows.append({"table": "Idempotency middleware on Redis", "name": f"skipped: {exc}"})
    return rows


if __name__ == "__main__":
    from benchmarks.__main__ import main

    raise SystemExit(main(["idempotency"]))
