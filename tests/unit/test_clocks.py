"""Clocks: resolving ``clock=`` options, and ``FakeClock`` for tests."""

from __future__ import annotations

import math
import threading

import pytest

from resilience.clock import SYSTEM_CLOCK, resolve_clock
from resilience.testing import FakeClock


def test_fake_clock_validation_and_threaded_sleepers() -> None:
    clock = FakeClock(10.0, auto_advance=False)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.advance(math.nan)
    with pytest.raises(ValueError):
        FakeClock(math.inf)
    woke: list[float] = []
    t = threading.Thread(target=lambda: (clock.sleep(2.0), woke.append(clock.monotonic())))
    t.start()
    clock.advance(1.0)
    assert woke == []
    clock.advance(1.0)
    t.join(timeout=5)
    assert woke == [12.0]


def test_clock_resolution() -> None:
    assert resolve_clock(None) is SYSTEM_CLOCK
    with pytest.raises(ValueError, match="clock"):
        resolve_clock(object())  # type: ignore[arg-type]
    assert SYSTEM_CLOCK.monotonic() > 0
