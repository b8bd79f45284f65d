"""An origin: a base URL checked once, its comparable (scheme, host, port) and a safe label."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Origin", "parse_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """A base URL (no query, no fragment) and the RFC 6454 origin it belongs to.

    ``label`` is what events and snapshots show: scheme, host and port only,
    never the user-info, path or query of the configured URL.
    """

    name: str
    base: str
    scheme: str
    host: str
    port: int

    @property
    def key(self) -> tuple[str, str, int]:
        """(scheme, host, port): two origins with the same key may share credentials."""
        return (self.scheme, self.host, self.port)

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (which starts with ``/``) on this origin."""
        return self.base + path


def parse_origin(url: object, name: str) -> Origin:
    """Check a base URL given for ``name`` ("primary" or "secondary"); ``ValueError`` names it."""
    if not isinstance(url, str):
        url = str(url) if type(url).__name__ == "URL" else url  # a yarl.URL
    if not isinstance(url, str) or not url:
        raise ValueError(f"{name} must be a base URL string, got {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{name} must be an http:// or https:// URL, got scheme {scheme!r}")
    if not parts.hostname:
        raise ValueError(f"{name} must name a host, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} must be a base URL without query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{name} must not carry credentials in the URL; pass headers or auth= per request"
        )
    return Origin(
        name=name,
        base=url.rstrip("/"),
        scheme=scheme,
        host=parts.hostname.lower(),
        port=port if port is not None else _DEFAULT_PORTS[scheme],
    )
