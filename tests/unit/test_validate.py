"""resilience._validate: one rule for NaN, infinity and bools, and every policy follows it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience import _validate

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
NOT_NUMBERS = st.one_of(
    st.booleans(), st.none(), st.text(max_size=3), st.lists(st.integers(), max_size=2)
)


def _accepts(check: Callable[..., Any], value: object, *args: Any, **kwargs: Any) -> bool:
    try:
        check(value, "field", *args, **kwargs)
    except ValueError as exc:
        assert "field" in str(exc)  # every message names the field
        assert repr(value) in str(exc)  # and shows what it got
        return False
    return True


@given(ANY_FLOAT)
def test_positive_number_is_finite_and_above_zero(value: float) -> None:
    expected = math.isfinite(value) and value > 0
    assert _accepts(_validate.positive_number, value) is expected
    assert _accepts(_validate.positive_seconds, value) is expected
    if expected:
        assert _validate.positive_seconds(value, "f") == value


@given(ANY_FLOAT)
def test_non_negative_number_is_finite_and_at_least_zero(value: float) -> None:
    assert _accepts(_validate.non_negative_number, value) is (math.isfinite(value) and value >= 0)


@given(ANY_FLOAT, st.booleans())
def test_optional_seconds_allows_infinity_but_never_nan(value: float, positive: bool) -> None:
    expected = not math.isnan(value) and (value > 0 if positive else value >= 0)
    assert _accepts(_validate.optional_seconds, value, positive=positive) is expected
    if expected:
        assert _validate.optional_seconds(value, "f", positive=positive) == value
    assert _validate.optional_seconds(None, "f", positive=positive) is None


@given(ANY_FLOAT)
def test_fraction_is_in_zero_one(value: float) -> None:
    assert _accepts(_validate.fraction, value) is (0 < value <= 1)


@given(NOT_NUMBERS)
def test_no_number_check_takes_a_bool_or_a_non_number(value: object) -> None:
    for check in (
        _validate.positive_number,
        _validate.positive_seconds,
        _validate.non_negative_number,
        _validate.fraction,
    ):
        assert not _accepts(check, value)
    assert _accepts(_validate.optional_seconds, value) is (value is None)


@given(st.one_of(st.integers(-5, 5), st.booleans(), ANY_FLOAT), st.integers(0, 2))
def test_whole_number_is_an_int_not_a_bool(value: object, minimum: int) -> None:
    expected = type(value) is int and value >= minimum
    assert _accepts(_validate.whole_number, value, minimum) is expected


def test_strings() -> None:
    assert _validate.non_empty_str("a", "name") == "a"
    for bad in ("", None, 3, b"x"):
        with pytest.raises(ValueError, match="name must be a non-empty string"):
            _validate.non_empty_str(bad, "name")
    assert _validate.optional_non_empty_str(None, "name") is None
    with pytest.raises(ValueError, match="name"):
        _validate.optional_non_empty_str("", "name")


def test_exception_types() -> None:
    assert _validate.exception_types(KeyError, "on") == (KeyError,)
    assert _validate.exception_types([KeyError, OSError], "on") == (KeyError, OSError)
    assert _validate.exception_types((), "ignore", allow_empty=True) == ()
    for bad in ((), "ValueError", (ValueError, int), 3, None, (KeyError, KeyError()), int):
        with pytest.raises(ValueError, match="on must be an exception class"):
            _validate.exception_types(bad, "on")


def test_callables_and_choices() -> None:
    assert _validate.callable_or_none(None, "key") is None
    assert _validate.callable_or_none(len, "key") is len
    with pytest.raises(ValueError, match=r"key must be a callable\(x\) or None, got 3"):
        _validate.callable_or_none(3, "key", what="callable(x)")
    assert _validate.one_of("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match="mode must be one of 'a', 'b', got 'c'"):
        _validate.one_of("c", "mode", ("a", "b"))
    with pytest.raises(ValueError, match="flag"):
        _validate.one_of(True, "flag", (1, 2))  # True == 1, but it is not the choice 1


# -- every policy applies the same rule to its options ------------------------------------


def _build(kind: str, value: object) -> object:
    import resilience as r
    from resilience.retrying.backoff import Backoff

    builders: dict[str, Callable[[object], object]] = {
        "Timeout.seconds": lambda v: r.Timeout(v),  # type: ignore[arg-type]
        "RateLimiter.store_error_retry_after": lambda v: r.RateLimiter(
            r.TokenBucket(1),
            store_error_retry_after=v,  # type: ignore[arg-type]
        ),
        "TokenBucket.period": lambda v: r.TokenBucket(1, v),  # type: ignore[arg-type]
        "Retry.deadline": lambda v: r.Retry(deadline=v),  # type: ignore[arg-type]
        "RetryBudget.ratio": lambda v: r.RetryBudget(ratio=v),  # type: ignore[arg-type]
        "Backoff.initial": lambda v: Backoff(initial=v),  # type: ignore[arg-type]
        "idempotent.ttl": lambda v: r.idempotent(ttl=v),  # type: ignore[arg-type]
        "ClaimCheck.grant.ttl": lambda v: _grant(v),
        "ClaimCheck.ttl": lambda v: r.ClaimCheck(r.MemoryBlobStore(), b"0123456789abcdef", ttl=v),  # type: ignore[arg-type]
    }
    return builders[kind](value)


def _grant(ttl: object) -> object:
    from resilience import ClaimCheck, MemoryBlobStore

    check = ClaimCheck(MemoryBlobStore(), secret=b"0123456789abcdef0123", threshold=0)
    envelope = check.check_in(b"payload")
    return check.grant(envelope, ttl=ttl)  # type: ignore[arg-type]


KINDS = [
    "Timeout.seconds",
    "RateLimiter.store_error_retry_after",
    "TokenBucket.period",
    "Retry.deadline",
    "RetryBudget.ratio",
    "Backoff.initial",
    "idempotent.ttl",
    "ClaimCheck.grant.ttl",
    "ClaimCheck.ttl",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [True, False, math.nan, -1.0, "1"], ids=repr)
def test_every_policy_refuses_bools_nan_and_negatives(kind: str, bad: object) -> None:
    field = kind.rsplit(".", 1)[1]
    with pytest.raises(ValueError, match=field):
        _build(kind, bad)


def _named(kind: str) -> Callable[[str], object]:
    import resilience as r

    return {
        "RateLimiter": lambda n: r.RateLimiter(r.TokenBucket(1), name=n),
        "Composition": lambda n: r.Composition(r.Timeout(1.0), name=n),
        "Timeout": lambda n: r.Timeout(1.0, name=n),
        "Fallback": lambda n: r.Fallback(0, name=n),
        "Retry": lambda n: r.Retry(name=n),
        "ClaimCheck": lambda n: r.ClaimCheck(r.MemoryBlobStore(), b"0123456789abcdef", name=n),
    }[kind]


@pytest.mark.parametrize(
    "kind", ["RateLimiter", "Composition", "Timeout", "Fallback", "Retry", "ClaimCheck"]
)
@pytest.mark.parametrize("bad", ["", 3, b"x"], ids=repr)
def test_every_name_option_says_non_empty_string(kind: str, bad: object) -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        _named(kind)(bad)  # type: ignore[arg-type]
