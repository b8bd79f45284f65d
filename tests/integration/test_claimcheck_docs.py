"""Every example of docs/claim-check.md runs, the Redis and S3 ones against real servers.

Blocks fenced ```python run everywhere (tests/unit/test_docs.py too);
```python redis and ```python s3 blocks run here with the page's hosts
replaced by the test redis-server and moto's S3 server on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience import default_bus

moto_server = pytest.importorskip("moto.server")

pytestmark = pytest.mark.redis

PAGE = Path(__file__).resolve().parents[2] / "docs" / "claim-check.md"
BLOCK = re.compile(r"```python( redis| s3)?\n(.*?)```", re.DOTALL)


@pytest.fixture
def s3_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_claim_check_page_examples_run(redis_url: str, s3_url: str) -> None:
    blocks = BLOCK.findall(PAGE.read_text())
    assert {kind for kind, _ in blocks} == {"", " redis", " s3"}
    streams = next(block for kind, block in blocks if kind == " redis")
    # The consumer shown must stay idempotent and its redelivery must stay exercised.
    for needle in ("@idempotent(", "xautoclaim(", "assert done == "):
        assert needle in streams, needle
    namespace: dict[str, object] = {"__name__": "docs_claim_check"}
    sinks = default_bus.sinks
    try:
        for _kind, block in blocks:
            source = block.replace("redis://redis.internal:6379/0", redis_url).replace(
                "http://s3.internal:9000", s3_url
            )
            exec(compile(source, f"{PAGE}:example", "exec"), namespace)
    finally:
        for sink in default_bus.sinks:
            if sink not in sinks:
                default_bus.remove(sink)
