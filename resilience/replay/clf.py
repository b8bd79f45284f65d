"""Common and Combined Log Format (Apache ``%h %l %u %t "%r" %>s %b``, nginx ``combined``).

One precompiled regex per line (about a microsecond) and a cached timestamp
conversion.  What a line offers as a key: ``ip`` (remote address), ``user``
(the authenticated user, ``-`` for anonymous requests), ``path`` (request
path without the query) and, in the combined format only,
``header:referer`` and ``header:user-agent``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from re import Match

from resilience.replay.badlines import snippet
from resilience.replay.key_spec import MAX_KEY_LENGTH, KeySpec, request_path
from resilience.replay.timeparse import TimeCache, clf_time

__all__ = ["CLF_HEADERS", "CLF_LINE", "ClfParser"]

_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
CLF_LINE = re.compile(
    r"(\S+) (\S+) (\S+) \[([^\]]+)\] "  # host, ident, authuser, [time]
    + _QUOTED  # "request"
    + r" (\d{3}|-) (\d+|-)"  # status, bytes
    + r"(?: "
    + _QUOTED
    + " "
    + _QUOTED
    + ")?"  # combined: "referer" "user-agent"
)
_HOST, _USER, _TIME, _REQUEST, _REFERER, _AGENT = 1, 3, 4, 5, 8, 9

CLF_HEADERS = {"referer": _REFERER, "referrer": _REFERER, "user-agent": _AGENT}
"""The only request headers an access log line carries (combined format)."""


def _key_reader(key: KeySpec) -> tuple[int, Callable[[str], str | None] | None, str]:
    """Which regex group holds the key, an optional transform, and a 'missing' reason."""
    if key.kind == "ip":
        return _HOST, None, ""
    if key.kind == "user":
        return _USER, None, ""
    if key.kind == "path":
        return _REQUEST, request_path, "request line has no path"
    group = CLF_HEADERS.get(key.header)
    if group is None:
        raise ValueError(
            f"access logs do not record header {key.header!r}; the combined format has only "
            "header:referer and header:user-agent (use JSON lines or CSV for other headers)"
        )
    return group, None, f"no {key.header} field (needs the combined format)"


class ClfParser:
    """Turns access-log lines into ``(time, key)`` records, counting bad lines."""

    name = "clf"

    def __init__(self, key: KeySpec) -> None:
        self.key = key
        self._group, self._transform, self._missing = _key_reader(key)

    def describe(self) -> str:
        return "Common/Combined Log Format"

    def records(
        self, lines: Iterable[str], bad: Callable[[int, str], None]
    ) -> Iterator[tuple[float, str]]:
        match: Callable[[str], Match[str] | None] = CLF_LINE.match
        when = TimeCache(clf_time)
        group = self._group
        transform = self._transform
        missing = self._missing
        for lineno, line in enumerate(lines, 1):
            m = match(line)
            if m is None:
                if line.strip():
                    bad(lineno, f"not Common/Combined Log Format: {snippet(line)}")
                continue
            try:
                t = when(m[_TIME])
            except ValueError as exc:
                bad(lineno, str(exc))
                continue
            k = m[group]
            if transform is not None and k is not None:
                k = transform(k)
            if not k:
                bad(lineno, missing)
                continue
            if len(k) > MAX_KEY_LENGTH:
                bad(lineno, f"key is {len(k)} characters; at most {MAX_KEY_LENGTH} are accepted")
                continue
            yield t, k
