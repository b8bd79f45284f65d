"""Lines that could not be used: counted, and the first few kept with their line numbers."""

from __future__ import annotations

from resilience import _validate

__all__ = ["BadLines", "snippet"]

_SNIPPET = 60


class BadLines:
    """Count of unusable lines plus the first ``keep`` of them as ``(line number, reason)``."""

    __slots__ = ("count", "first", "keep")

    def __init__(self, keep: int = 10) -> None:
        self.keep = _validate.whole_number(keep, "keep", minimum=0)
        self.count = 0
        self.first: list[tuple[int, str]] = []

    def add(self, lineno: int, reason: str) -> None:
        self.count += 1
        if len(self.first) < self.keep:
            self.first.append((lineno, reason))


def snippet(line: str) -> str:
    """The start of a line, quoted, for an error message."""
    line = line.rstrip("\r\n")
    return repr(line if len(line) <= _SNIPPET else line[:_SNIPPET] + "...")
