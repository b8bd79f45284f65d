"""What a request is counted against: ``--key ip|user|path|header:NAME``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["MAX_KEY_LENGTH", "KeySpec", "request_path"]

KeyKind = Literal["ip", "user", "path", "header"]

MAX_KEY_LENGTH = 1024
"""Longer keys are bad lines (the memory store refuses them too)."""


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A parsed ``--key`` value; header names are case-insensitive, kept lower-case."""

    kind: KeyKind
    header: str = ""

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        value = text.strip()
        kind, colon, name = value.partition(":")
        kind = kind.lower()
        if kind == "header":
            name = name.strip().lower()
            if not colon or not name:
                raise ValueError("header keys need a name, e.g. header:X-Api-Key")
            return cls("header", name)
        if colon or kind not in ("ip", "user", "path"):
            raise ValueError(f"key {text!r} must be ip, user, path or header:NAME")
        return cls(kind)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"header:{self.header}" if self.kind == "header" else self.kind


def request_path(target: str) -> str | None:
    """The path of a request line or URL, without its query string.

    ``"GET /a/b?x=1 HTTP/1.1"`` and ``"https://h/a/b?x=1"`` both give ``/a/b``.
    ``None`` when there is no path (``"-"``, TLS garbage in the request field).
    """
    target = target.strip()
    if " " in target:
        parts = target.split()
        if len(parts) < 2:
            return None
        target = parts[1]
    if target.startswith("/"):
        end = target.find("?")
        return target if end < 0 else target[:end]
    if "://" in target:
        try:
            return urlsplit(target).path or "/"
        except ValueError:
            return None
    return None
