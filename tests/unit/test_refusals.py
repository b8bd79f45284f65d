"""The refusals raised on hot paths (open circuit, full bulkhead) look and pickle like
their public classes, though C code builds them."""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable

import pytest

from resilience import Bulkhead, BulkheadFull, CircuitBreaker, CircuitOpen
from resilience.events import EventBus


def refusal_of_an_open_breaker() -> CircuitOpen:
    breaker = CircuitBreaker(name="db", minimum_calls=1, events=EventBus())
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    with pytest.raises(CircuitOpen) as caught:
        breaker.call(lambda: "never")
    return caught.value


def refusal_of_a_full_bulkhead() -> BulkheadFull:
    bulkhead = Bulkhead("pool", max_concurrent=1, events=EventBus())
    with pytest.raises(BulkheadFull) as caught:
        bulkhead.call(lambda: bulkhead.call(lambda: "never"))
    return caught.value


@pytest.mark.parametrize(
    ("make", "public", "text"),
    [
        (refusal_of_an_open_breaker, CircuitOpen, "circuit 'db' is open; retry after"),
        (refusal_of_a_full_bulkhead, BulkheadFull, "bulkhead 'pool' is full"),
    ],
)
def test_a_refusal_looks_and_pickles_like_its_public_class(
    make: Callable[[], CircuitOpen | BulkheadFull], public: type[Exception], text: str
) -> None:
    error = make()
    assert isinstance(error, public)
    assert type(error).__name__ == public.__name__
    assert str(error).startswith(text)
    assert repr(error).startswith(f"{public.__name__}(")
    line = traceback.format_exception(error)[-1]
    assert line.startswith(f"resilience.errors.{public.__name__}: {text}")
    back: CircuitOpen | BulkheadFull = pickle.loads(pickle.dumps(error))
    assert type(back) is public
    assert (back.name, back.retry_after, str(back)) == (error.name, error.retry_after, str(error))
