"""Credentials stay with the origin they were given for.

A caller's ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` headers
(and aiohttp's ``auth=`` and ``cookies=`` arguments) were written for the
primary.  Sending them to a secondary on another host hands them to a
different party, so by default they are removed from any attempt on an origin
whose (scheme, host, port) differs from the primary's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CREDENTIAL_HEADERS", "carries_credentials", "strip_credentials"]

CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
CREDENTIAL_ARGUMENTS = ("auth", "cookies", "proxy_auth")


def _pairs(headers: object) -> Iterable[tuple[Any, Any]]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()  # a CIMultiDict yields every pair, repeats included
    if isinstance(headers, Iterable) and not isinstance(headers, str | bytes):
        return headers
    raise TypeError(f"headers must be a mapping or pairs, got {type(headers).__name__}")


def _is_credential(name: object) -> bool:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    return isinstance(name, str) and name.strip().lower() in CREDENTIAL_HEADERS


def carries_credentials(headers: object, options: Mapping[str, Any]) -> bool:
    """Whether a request has credential headers or ``auth``/``cookies``/``proxy_auth`` set."""
    if any(options.get(arg) for arg in CREDENTIAL_ARGUMENTS):
        return True
    return any(_is_credential(name) for name, _ in _pairs(headers))


def strip_credentials(headers: object) -> list[tuple[Any, Any]]:
    """The headers as pairs, without the credential ones (repeats of the others kept)."""
    return [(name, value) for name, value in _pairs(headers) if not _is_credential(name)]
