"""``StructlogSink``: events as structlog lines, filtered by level."""

from __future__ import annotations

from typing import Any

import pytest

from resilience.events import EventBus, RetryScheduled, StructlogSink


def test_structlog_sink_and_levels() -> None:
    lines: list[tuple[str, str, dict[str, Any]]] = []

    class Logger:
        def __getattr__(self, level: str) -> Any:
            return lambda kind, **fields: lines.append((level, kind, fields))

    bus = EventBus([StructlogSink(Logger(), min_level="info")])
    bus.emit(RetryScheduled("api", attempt=2, delay=0.5, error="boom"))
    assert lines == [
        ("info", "retry_scheduled", {"policy": "api", "attempt": 2, "delay": 0.5, "error": "boom"})
    ]
    with pytest.raises(ValueError):
        StructlogSink(min_level="verbose")
