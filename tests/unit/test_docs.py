"""Every ```python block in the user docs runs (blocks of one page share a namespace).

Code of other libraries (the migration page) is fenced as ```py: shown, not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resilience import default_bus

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "README.md",
    "docs/rate-limiting.md",
    "docs/testing.md",
    "docs/retry.md",
    "docs/bulkhead.md",
    "docs/timeout-fallback-compose.md",
    "docs/circuit-breaker.md",
    "docs/claim-check.md",
    "docs/failover.md",
    "docs/index.md",
    "docs/observability.md",
    "docs/choosing-a-store.md",
    "docs/migration.md",
    "docs/demo.md",
]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page: str) -> None:
    text = (ROOT / page).read_text()
    blocks = BLOCK.findall(text)
    namespace: dict[str, object] = {"__name__": f"docs_{Path(page).stem}"}
    sinks = default_bus.sinks
    try:
        for block in blocks:
            exec(compile(block, f"{page}:example", "exec"), namespace)
    finally:
        for sink in default_bus.sinks:
            if sink not in sinks:
                default_bus.remove(sink)
