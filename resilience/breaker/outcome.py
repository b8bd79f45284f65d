"""How a finished call counts: failure, success, or not at all.

Kept out of the state store on purpose: exception types and result
predicates are Python objects that never cross a process boundary, so the
breaker reduces every outcome to "failed / succeeded / release" before it
talks to the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

__all__ = ["FAILED", "RELEASE", "SUCCEEDED", "Classifier", "NEVER_FAILURES"]

SUCCEEDED: Final = 0
FAILED: Final = 1
RELEASE: Final = 2  # counts as nothing; a half-open probe gives its slot back
CANCELLED: Final = 3  # nothing in closed state; a failed probe in half-open

NEVER_FAILURES: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)
"""Interrupts and shutdown say nothing about the protected dependency."""


class Classifier:
    """``record`` / ``ignore`` exception types and the ``failure_if`` result predicate.

    An exception matching ``ignore`` counts as nothing; else one matching
    ``record`` is a failure; any other exception is a success (the dependency
    answered, the caller's input was wrong).  ``CancelledError`` is
    :data:`CANCELLED` whatever the lists say: the breaker counts a cancelled
    half-open probe as failed and a cancelled closed call as nothing.
    """

    __slots__ = ("_release", "failure_if", "ignore", "record")

    def __init__(
        self,
        record: tuple[type[BaseException], ...],
        ignore: tuple[type[BaseException], ...],
        failure_if: Callable[[Any], bool] | None,
    ) -> None:
        self.record = record
        self.ignore = ignore
        self.failure_if = failure_if
        self._release = NEVER_FAILURES + ignore

    def error(self, exc: BaseException) -> int:
        if isinstance(exc, asyncio.CancelledError):
            return CANCELLED
        if isinstance(exc, self._release):
            return RELEASE
        if isinstance(exc, self.record):
            return FAILED
        return SUCCEEDED

    def result(self, value: object) -> int:
        """``failure_if(value)`` as a verdict; a predicate that raises propagates."""
        predicate = self.failure_if
        if predicate is not None and predicate(value):
            return FAILED
        return SUCCEEDED
