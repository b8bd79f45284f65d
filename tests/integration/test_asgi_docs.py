"""Every ```python block of docs/web.md runs; each app it defines is served and exercised.

Blocks run one by one in fresh namespaces.  A block that defines ``app`` (a
Starlette, FastAPI or Litestar ASGI app, or an aiohttp ``web.Application``)
is served on 127.0.0.1 by a real server (uvicorn or aiohttp) and driven by
httpx: its ``/`` must answer 200 with rate-limit headers until the
example's 5-per-minute limit is spent, then 429 with ``Retry-After`` and a
problem+json body.
"""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from resilience import default_bus
from tests.integration.servers import serve_aiohttp, serve_asgi

PAGE = Path(__file__).resolve().parents[2] / "docs" / "web.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
FRAMEWORKS = {"Starlette(": "starlette", "FastAPI(": "fastapi", "Litestar(": "litestar"}


def _label(block: str) -> str:
    if "web.Application(" in block:
        return "aiohttp"
    for marker, name in FRAMEWORKS.items():
        if marker in block:
            return name
    first = block.strip().splitlines()[0]
    return re.sub(r"\W+", "-", first)[:40]


def test_the_page_has_an_example_per_framework() -> None:
    labels = {_label(block) for block in BLOCKS}
    assert {"starlette", "fastapi", "litestar", "aiohttp"} <= labels


@pytest.mark.parametrize("block", BLOCKS, ids=[_label(b) for b in BLOCKS])
async def test_example_runs(block: str) -> None:
    # A real module: Litestar resolves handler annotations through sys.modules.
    module = types.ModuleType("docs_web_" + re.sub(r"\W", "_", _label(block)))
    sys.modules[module.__name__] = module
    sinks = default_bus.sinks
    try:
        exec(compile(block, f"{PAGE.name}:{_label(block)}", "exec"), module.__dict__)
        app = module.__dict__.get("app")
        if app is None:
            return
        server = serve_aiohttp(app) if isinstance(app, web.Application) else serve_asgi(app)
        async with server as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            await _limits_at_five(client)
    finally:
        del sys.modules[module.__name__]
        for sink in default_bus.sinks:
            if sink not in sinks:
                default_bus.remove(sink)


async def _limits_at_five(client: httpx.AsyncClient) -> None:
    statuses = []
    for _ in range(8):
        response = await client.get("/")
        statuses.append(response.status_code)
        assert "ratelimit" in response.headers or "x-ratelimit-limit" in response.headers
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            body = json.loads(response.content)
            assert response.headers["content-type"] == "application/problem+json"
            assert body["status"] == 429 and body["policy"].endswith("-demo")
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429] * 3
