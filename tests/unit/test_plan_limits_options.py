"""``PlanLimits``: options checked at construction, plan picking without a server."""

from __future__ import annotations

import pytest

from resilience import RateLimiter, TokenBucket
from resilience.web import PlanLimits

FREE = RateLimiter(TokenBucket(1, 1.0), name="free")
PAID = RateLimiter(TokenBucket(5, 1.0), name="paid")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"plan": "free", "limiters": {"free": FREE}, "default": "free"}, "plan"),
        ({"plan": str, "limiters": {}, "default": "free"}, "limiters"),
        ({"plan": str, "limiters": [FREE], "default": "free"}, "limiters"),
        ({"plan": str, "limiters": {"": FREE}, "default": ""}, "limiters keys"),
        ({"plan": str, "limiters": {"free": "1/s"}, "default": "free"}, "limiters['free']"),
        ({"plan": str, "limiters": {"free": FREE}, "default": "paid"}, "default"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field.replace('[', '.').replace(']', '.')}"):
        PlanLimits(**kwargs)  # type: ignore[arg-type]


def test_pick_falls_back_to_the_default_for_none_unknown_and_non_strings() -> None:
    plans = PlanLimits(lambda request: request, {"free": FREE, "paid": PAID}, default="free")
    tables = plans.compile(lambda limiter: limiter.name)
    assert tables.pick("paid") == "paid"
    assert [tables.pick(x) for x in (None, "gold", 3, ["paid"])] == ["free"] * 4


def test_a_limiter_shared_by_two_plans_is_compiled_once() -> None:
    built: list[str] = []
    plans = PlanLimits(str, {"trial": FREE, "free": FREE, "paid": PAID}, default="free")
    plans.compile(lambda limiter: built.append(limiter.name))
    assert built == ["free", "paid"]
