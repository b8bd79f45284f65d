"""Every ```python block of docs/redis.md runs, against the test server.

The page's examples name ``redis.internal``; blocks that talk to Redis get the
test server's URL instead (the others only build clients, which connect
lazily), and ``cluster.internal`` becomes a node of the test cluster.
Top-level ``await`` runs in an event loop, as in an async app.
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import pytest

from resilience.redis.testing import RedisClusterNodes

pytestmark = pytest.mark.redis

PAGE = Path(__file__).resolve().parents[2] / "docs" / "redis.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_redis_page_examples_run(redis_url: str, redis_cluster: RedisClusterNodes) -> None:
    host, port = redis_cluster.startup_nodes[0]
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) >= 3
    namespace: dict[str, object] = {"__name__": "docs_redis"}
    for block in blocks:
        source = block.replace("redis://redis.internal:6379/0", redis_url)
        source = source.replace('host="cluster.internal", port=6379', f'host="{host}", port={port}')
        code = compile(source, f"{PAGE}:example", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)  # a coroutine when the block awaits
        if asyncio.iscoroutine(result):
            asyncio.run(result)
