"""Every ```python block of docs/idempotency.md runs; the web apps it defines are served.

Blocks run in order in one namespace, with the page's Redis URL replaced by
the test server's.  A block that defines ``app`` is served (uvicorn or
aiohttp) and driven by httpx: two POSTs with one Idempotency-Key run the
handler once and the second is a byte-exact replay.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from resilience import default_bus
from tests.integration.servers import serve_aiohttp, serve_asgi

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:RedisStore.timeout=.*cannot bound:RuntimeWarning"),
]

PAGE = Path(__file__).resolve().parents[2] / "docs" / "idempotency.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)


def test_the_page_covers_the_issue() -> None:
    text = "\n".join(BLOCKS)
    for needed in ("FastAPI(", "web.Application(", "SQLiteIdempotencyStore(",
                   "RedisIdempotencyStore", "FakeClock"):  # fmt: skip
        assert needed in text, needed
    assert "| store | survives a restart |" in PAGE.read_text()


async def test_examples_run(redis_url: str) -> None:
    namespace: dict[str, object] = {"__name__": "docs_idempotency"}
    sinks = default_bus.sinks
    served = 0
    try:
        for index, block in enumerate(BLOCKS):
            source = block.replace("redis://redis.internal:6379/0", redis_url)
            namespace.pop("app", None)
            if "asyncio.run(" in source:  # the page's own event loop: run it in a thread
                import asyncio

                await asyncio.to_thread(exec, compile(source, f"{PAGE.name}:{index}", "exec"),
                                        namespace)  # fmt: skip
            else:
                exec(compile(source, f"{PAGE.name}:{index}", "exec"), namespace)
            app = namespace.get("app")
            if app is None:
                continue
            served += 1
            server = serve_aiohttp(app) if isinstance(app, web.Application) else serve_asgi(app)
            async with server as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
                headers = {"Idempotency-Key": "8e03978e", "Authorization": "alice"}
                first = await client.post("/orders", json={"item": "book"}, headers=headers)
                second = await client.post("/orders", json={"item": "book"}, headers=headers)
                assert first.status_code == second.status_code == 201
                assert first.content == second.content
                assert second.headers["idempotent-replayed"] == "true"
                reused = await client.post("/orders", json={"item": "pen"}, headers=headers)
                assert reused.status_code == 422
            if "orders" in namespace:
                assert len(namespace["orders"]) == 1  # type: ignore[arg-type]
    finally:
        for sink in default_bus.sinks:
            if sink not in sinks:
                default_bus.remove(sink)
    assert served == 2
