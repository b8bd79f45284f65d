"""Client addresses: parse them, group them, and read forwarding headers safely.

Why this is more than ``request.client.host``: behind a reverse proxy every
request comes from the proxy, so the client is named in ``X-Forwarded-For``
or ``Forwarded`` (RFC 7239).  Those headers are written by whoever sent the
request, so they are believed only when the peer is a proxy the operator
listed, and read *right to left*: each trusted hop vouches for the address
to its left, and the first address that is not a trusted proxy is the
client.  Anything to the left of it was written by the client itself and is
ignored.

IPv6 clients are grouped by prefix (/64 by default): one subscriber usually
holds a whole /64 and can rotate through its 2**64 addresses, so a per-address
bucket would not limit anyone.

Nothing here raises on bad input: a malformed, huge or repeated header makes
the walk stop at the last address it could trust.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

__all__ = [
    "IPAddress",
    "IPNetwork",
    "MAX_ADDRESS_LENGTH",
    "MAX_HOPS",
    "forwarded_hops",
    "group_address",
    "parse_address",
    "parse_networks",
    "walk_hops",
    "xff_hops",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOPS = 32
"""Forwarding entries examined from the right; more trusted hops than this is not a real chain."""

MAX_ADDRESS_LENGTH = 64
"""Longer than any address with brackets, port and zone that we accept."""

MAX_HEADER_CHARS = 8192
"""Only the last this-many characters of the forwarding headers are parsed."""


def parse_address(text: str) -> IPAddress | None:
    """An address as forwarding headers write it (``1.2.3.4``, ``1.2.3.4:80``,
    ``2001:db8::1``, ``[2001:db8::1]:443``); ``None`` if it is not one."""
    text = text.strip()
    if not text or len(text) > MAX_ADDRESS_LENGTH:
        return None
    return _parse(text)


@lru_cache(maxsize=16384)
def _parse(text: str) -> IPAddress | None:
    """Cached: ``ipaddress`` takes microseconds, and proxies and clients repeat."""
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1 :]
        if rest and not (rest[0] == ":" and _is_port(rest[1:])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535


def unmap(address: IPAddress) -> IPAddress:
    """``::ffff:1.2.3.4`` is the IPv4 client ``1.2.3.4`` (dual-stack sockets report it so)."""
    if address.version == 6:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return mapped
    return address


@lru_cache(maxsize=16384)
def group_address(address: IPAddress, ipv6_prefix: int = 64) -> str:
    """The rate-limit key of an address: IPv4 as is, IPv6 as its ``/ipv6_prefix`` network."""
    address = unmap(address)
    if address.version == 4 or ipv6_prefix == 128:
        return str(address)
    shift = 128 - ipv6_prefix
    network = ipaddress.IPv6Address(int(address) >> shift << shift)
    return f"{network}/{ipv6_prefix}"


@lru_cache(maxsize=8192)
def group_peer(peer: str, ipv6_prefix: int) -> str:
    """``group_address`` for a peer string from the server (cached: peers repeat)."""
    address = parse_address(peer)
    if address is None:
        return peer[:MAX_ADDRESS_LENGTH]
    return group_address(address, ipv6_prefix)


def parse_networks(
    values: Iterable[object], field: str = "trusted_proxies"
) -> tuple[IPNetwork, ...]:
    """Networks from ``"10.0.0.0/8"``, ``"127.0.0.1"``, ``"::1"`` or ``ipaddress`` objects."""
    if isinstance(values, str | bytes):
        raise ValueError(f"{field} must be a list of networks, not one string: {values!r}")
    networks: list[IPNetwork] = []
    for value in values:
        if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(value)
            continue
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"{field} entries must be networks or addresses, got {value!r}")
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{field} entry {value!r} is not an IP network") from None
    return tuple(networks)


def xff_hops(values: Sequence[str]) -> list[str]:
    """``X-Forwarded-For`` entries, rightmost (nearest) first, at most ``MAX_HOPS``.

    Repeated header lines form one list in order (RFC 9110 5.3).  When the
    header is cut (too long or too many entries), the leftmost, incomplete
    part is dropped: the walk then stops at the last hop it could read.
    """
    joined = ",".join(values)
    cut = len(joined) > MAX_HEADER_CHARS
    if cut:
        joined = joined[-MAX_HEADER_CHARS:]
    parts = joined.rsplit(",", MAX_HOPS)
    if cut or len(parts) > MAX_HOPS:
        parts = parts[1:]
    parts.reverse()
    return parts


def forwarded_hops(values: Sequence[str]) -> list[str]:
    """The ``for=`` value of each ``Forwarded`` element, rightmost first ("" when absent)."""
    joined = ",".join(values)
    cut = len(joined) > MAX_HEADER_CHARS
    if cut:
        joined = joined[-MAX_HEADER_CHARS:]
    elements = _split_elements(joined) if '"' in joined else joined.split(",")
    if cut:
        elements = elements[1:]
    hops = [_for_value(element) for element in elements[-MAX_HOPS:]]
    hops.reverse()
    return hops


def _split_elements(text: str) -> list[str]:
    """Split on commas outside quoted strings (a quoted value may hold a comma)."""
    elements: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == ",":
            elements.append(text[start:index])
            start = index + 1
    elements.append(text[start:])
    return elements


def _for_value(element: str) -> str:
    for pair in element.split(";"):
        name, sep, value = pair.partition("=")
        if sep and name.strip().lower() == "for":
            value = value.strip()
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1].replace("\\", "")
            return value
    return ""


def walk_hops(
    peer: IPAddress, hops: Iterable[str], trusted: Callable[[IPAddress], bool]
) -> IPAddress:
    """The client: the first hop from the right that is not a trusted proxy.

    ``peer`` is the trusted proxy that sent the request.  A hop that is not
    an address (``unknown``, an obfuscated ``_name``, garbage) ends the walk
    at the trusted hop that reported it; so does running out of hops (every
    one was a trusted proxy).
    """
    current = peer
    for hop in hops:
        address = parse_address(hop)
        if address is None:
            return current
        address = unmap(address)
        if not trusted(address):
            return address
        current = address
    return current


def is_trusted(address: IPAddress, trusted: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)
