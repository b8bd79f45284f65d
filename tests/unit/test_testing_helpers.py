"""Invariant helpers that ``resilience.testing`` ships to users."""

from __future__ import annotations

import pytest

from resilience.testing import max_admitted_in_window


@pytest.mark.parametrize(
    ("times", "period", "expected"),
    [
        ([], 1.0, 0),
        ([0.0, 0.5, 0.99, 1.0, 1.5], 1.0, 3),
        ([0.0, 1.0, 2.0], 1.0, 1),
        ([5.0] * 4, 0.1, 4),
    ],
)
def test_max_admitted_in_window(times: list[float], period: float, expected: int) -> None:
    assert max_admitted_in_window(times, period) == expected
