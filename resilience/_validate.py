"""Option checks shared by every policy: one rule for NaN, infinity and bools.

Each check takes the value and the field's name, returns the value in its
canonical type, and raises ``ValueError`` naming the field and showing the
value.  The rules are the same everywhere:

- ``True``/``False`` are never numbers (``bool`` subclasses ``int``, so a
  stray flag would otherwise pass as ``1``);
- NaN is never a number (every comparison with it is false, so it would
  slip through ``> 0`` style checks the wrong way);
- infinity is a number only where a check says so (``optional_seconds``:
  "no limit"); everywhere else a value must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = [
    "callable_or_none",
    "exception_types",
    "fraction",
    "non_empty_str",
    "non_negative_number",
    "one_of",
    "optional_non_empty_str",
    "optional_seconds",
    "positive_number",
    "positive_seconds",
    "whole_number",
]

T = TypeVar("T")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def non_empty_str(value: object, field: str) -> str:
    """A ``str`` with at least one character."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")
    return value


def optional_non_empty_str(value: object, field: str) -> str | None:
    """``None`` (a default is chosen later) or a non-empty string."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a non-empty string or None, got {value!r}")
    return value


def positive_number(value: object, field: str, *, unit: str = "number") -> float:
    """A finite number ``> 0``."""
    if not _is_number(value) or not (0 < value < math.inf):  # type: ignore[operator]
        raise ValueError(f"{field} must be a positive, finite {unit}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def positive_seconds(value: object, field: str) -> float:
    """A duration: a finite number of seconds ``> 0``."""
    return positive_number(value, field, unit="number of seconds")


def non_negative_number(value: object, field: str, *, unit: str = "number") -> float:
    """A finite number ``>= 0``."""
    if not _is_number(value) or not (0 <= value < math.inf):  # type: ignore[operator]
        raise ValueError(f"{field} must be a finite, non-negative {unit}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def optional_seconds(value: object, field: str, *, positive: bool = False) -> float | None:
    """``None`` or a number of seconds ``>= 0`` (``> 0`` if ``positive``); ``inf`` = no bound.

    The shape of every ``timeout=`` and ``deadline=`` option.
    """
    if value is None:
        return None
    if not _is_number(value):
        raise ValueError(f"{field} must be a number of seconds or None, got {value!r}")
    if value < 0 or (positive and value == 0):  # type: ignore[operator]
        which = "positive" if positive else "non-negative"
        raise ValueError(f"{field} must be {which} (or None), got {value!r}")
    return float(value)  # type: ignore[arg-type]


def fraction(value: object, field: str) -> float:
    """A number in ``(0, 1]`` (a rate or a share)."""
    if not _is_number(value) or not (0 < value <= 1):  # type: ignore[operator]
        raise ValueError(f"{field} must be a number in (0, 1], got {value!r}")
    return float(value)  # type: ignore[arg-type]


def whole_number(value: object, field: str, minimum: int = 1) -> int:
    """An ``int`` (not a ``bool``) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        if minimum == 1:
            raise ValueError(f"{field} must be a positive integer, got {value!r}")
        raise ValueError(f"{field} must be a whole number >= {minimum}, got {value!r}")
    return value


def exception_types(
    value: object, field: str, *, allow_empty: bool = False
) -> tuple[type[BaseException], ...]:
    """An exception class, or an iterable of them, as a tuple."""
    items = (value,) if isinstance(value, type) else value
    if isinstance(items, Iterable) and not isinstance(items, str | bytes):
        out = tuple(items)
        if (out or allow_empty) and all(
            isinstance(t, type) and issubclass(t, BaseException) for t in out
        ):
            return out
    raise ValueError(f"{field} must be an exception class or a tuple of them, got {value!r}")


def callable_or_none(value: T, field: str, *, what: str = "callable") -> T:
    """``None`` or something callable; ``what`` says which call shape is expected."""
    if value is not None and not callable(value):
        raise ValueError(f"{field} must be a {what} or None, got {value!r}")
    return value


def one_of(value: T, field: str, choices: Iterable[Any]) -> T:
    """One of a few literal choices (``on_store_error``, ``mode``...)."""
    options = tuple(choices)
    if not any(type(value) is type(c) and value == c for c in options):  # True is not 1
        listed = ", ".join(repr(c) for c in options)
        raise ValueError(f"{field} must be one of {listed}, got {value!r}")
    return value
