"""Who a request counts against: key extractors shared by the ASGI and aiohttp adapters.

A key extractor answers for an ASGI scope (``from_scope``, the hot path: it
reads the scope's raw header list directly) and for any other framework
given the peer address and a header lookup (``from_request``).  Every
extractor falls back to the client address when its own value is missing or
malformed: a request without an API key must count against *its sender*,
never against one bucket shared by every such request (one client would
then lock out all the others).

Keys are namespaced so that they cannot collide: addresses stay bare
(``203.0.113.7``, ``2001:db8:1:2::/64``), header values become
``x-api-key#<digest>``; a client cannot pick an API key equal to someone
else's address and drain that address's bucket.

Header values are credentials more often than not (API keys, bearer
tokens), and a key travels on to the store (Redis key names anyone with
``SCAN`` reads), to events and to log lines.  So a header's value leaves the
extractor only as a BLAKE2b digest (see :class:`KeyHasher`), unless the
caller says it is not a secret (``header("X-Tenant", secret=False)`` keeps
``x-tenant=<value>``).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from resilience import _validate
from resilience.web.addresses import (
    IPAddress,
    IPNetwork,
    forwarded_hops,
    group_address,
    group_peer,
    is_trusted,
    parse_address,
    parse_networks,
    unmap,
    walk_hops,
    xff_hops,
)

__all__ = [
    "CallableKey",
    "ClientIP",
    "HeaderKey",
    "HeaderLookup",
    "KeyHasher",
    "RequestKey",
    "clean_key",
    "client_ip",
    "header",
    "key_from",
    "NO_PEER",
]

HeaderLookup = Callable[[str], Sequence[str]]
"""``lookup("x-forwarded-for")`` -> every value of that header, in order (lowercase names)."""

ForwardingHeader = Literal["x-forwarded-for", "forwarded", "auto"]

NO_PEER = "unknown-peer"
"""The key when the server reports no peer at all (a Unix socket, an in-process test client)."""

UNIX_PEER = "0.0.0.0"
"""Stand-in peer for requests over a Unix socket when ``"unix"`` is a trusted proxy."""

MAX_KEY_LENGTH = 256
MEMO_SIZE = 8192
MEMO_CHAIN_CHARS = 512


class RequestKey(ABC):
    """Extracts a rate-limit key from a request; never raises on client input."""

    __slots__ = ()

    @abstractmethod
    def from_scope(self, scope: Mapping[str, Any]) -> str:
        """The key of an ASGI HTTP scope."""

    @abstractmethod
    def from_request(self, request: object, peer: str | None, headers: HeaderLookup) -> str:
        """The key of a framework request, given its peer address and its headers."""

    def __call__(self, scope: Mapping[str, Any]) -> str:
        return self.from_scope(scope)


def _scope_peer(scope: Mapping[str, Any]) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    host = client[0]
    return host if isinstance(host, str) and host else None


class ClientIP(RequestKey):
    """The client address, through trusted proxies only; IPv6 grouped by prefix."""

    __slots__ = (
        "_header",
        "_memo",
        "_names",
        "_trusted",
        "_trusted_addresses",
        "_trusted_peers",
        "_unix",
        "ipv6_prefix",
    )

    def __init__(
        self,
        trusted_proxies: Iterable[object] = (),
        *,
        header: ForwardingHeader = "auto",
        ipv6_prefix: int = 64,
    ) -> None:
        if isinstance(trusted_proxies, str | bytes):
            parse_networks(trusted_proxies)  # raises: a list is needed, not one string
        entries = list(trusted_proxies)
        # "unix": the server reports no peer address (a Unix socket), and whatever sits on
        # that socket is our proxy.  Such requests walk the forwarding headers from a
        # stand-in peer address that is trusted for exactly that purpose.
        self._unix = any(isinstance(e, str) and e.strip().lower() == "unix" for e in entries)
        networks = [e for e in entries if not (isinstance(e, str) and e.strip().lower() == "unix")]
        if self._unix:
            networks.append(UNIX_PEER + "/32")
        self._trusted = parse_networks(networks)
        if header not in ("x-forwarded-for", "forwarded", "auto"):
            raise ValueError(
                f"header must be 'x-forwarded-for', 'forwarded' or 'auto', got {header!r}"
            )
        if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int):
            raise ValueError(f"ipv6_prefix must be an integer 1..128, got {ipv6_prefix!r}")
        if not 1 <= ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix must be an integer 1..128, got {ipv6_prefix!r}")
        self._header: ForwardingHeader = header
        self._names: tuple[bytes, ...] = (
            (b"x-forwarded-for", b"forwarded") if header == "auto" else (header.encode("ascii"),)
        )
        self.ipv6_prefix = ipv6_prefix
        self._trusted_peers: dict[str, bool] = {}
        self._memo: dict[tuple[str, str, str], str] = {}
        self._trusted_addresses: dict[IPAddress, bool] = {}

    @property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        return self._trusted

    def from_scope(self, scope: Mapping[str, Any]) -> str:
        peer = _scope_peer(scope)
        if peer is None:
            if not self._unix:
                return NO_PEER
            peer = UNIX_PEER
        if not self._trusted or not self._peer_trusted(peer):
            if ":" not in peer:
                return peer
            return group_peer(peer, self.ipv6_prefix)
        xff: list[str] = []
        fwd: list[str] = []
        names = self._names
        for name, value in scope.get("headers", ()):
            if name in names:
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                (xff if name == b"x-forwarded-for" else fwd).append(text)
        return self._through_proxies(peer, xff, fwd)

    def from_request(self, request: object, peer: str | None, headers: HeaderLookup) -> str:
        if peer is None or not peer:
            if not self._unix:
                return NO_PEER
            peer = UNIX_PEER
        if not self._trusted or not self._peer_trusted(peer):
            return group_peer(peer, self.ipv6_prefix)
        header = self._header
        xff = list(headers("x-forwarded-for")) if header != "forwarded" else []
        fwd = list(headers("forwarded")) if header != "x-forwarded-for" else []
        return self._through_proxies(peer, xff, fwd)

    def _peer_trusted(self, peer: str) -> bool:
        known = self._trusted_peers.get(peer)
        if known is None:
            address = parse_address(peer)
            known = address is not None and is_trusted(unmap(address), self._trusted)
            if len(self._trusted_peers) >= 4096:
                self._trusted_peers.clear()
            self._trusted_peers[peer] = known
        return known

    def _is_trusted(self, address: IPAddress) -> bool:
        known = self._trusted_addresses.get(address)
        if known is None:
            known = is_trusted(address, self._trusted)
            if len(self._trusted_addresses) >= MEMO_SIZE:
                self._trusted_addresses.clear()
            self._trusted_addresses[address] = known
        return known

    def _through_proxies(self, peer: str, xff: list[str], fwd: list[str]) -> str:
        """The key behind trusted proxies, memoised: a client's chain repeats in every request."""
        chain = (peer, ",".join(xff), ",".join(fwd))
        key = self._memo.get(chain)
        if key is None:
            key = self._walk(peer, xff, fwd)
            if len(chain[1]) + len(chain[2]) <= MEMO_CHAIN_CHARS:
                memo = self._memo
                if len(memo) >= MEMO_SIZE:
                    memo.clear()
                memo[chain] = key
        return key

    def _walk(self, peer: str, xff: list[str], fwd: list[str]) -> str:
        address = parse_address(peer)
        if address is None:  # cannot happen: _peer_trusted parsed it
            return group_peer(peer, self.ipv6_prefix)
        if xff and fwd:
            # Both present: one of them came from the client untouched (a proxy writes
            # one kind), and we cannot tell which.  Believe neither.
            return group_address(address, self.ipv6_prefix)
        if xff:
            client = walk_hops(address, xff_hops(xff), self._is_trusted)
        elif fwd:
            client = walk_hops(address, forwarded_hops(fwd), self._is_trusted)
        else:
            client = address
        return group_address(client, self.ipv6_prefix)

    def __repr__(self) -> str:
        proxies = [str(n) for n in self._trusted]
        return f"client_ip(trusted_proxies={proxies!r}, header={self._header!r})"


def client_ip(
    trusted_proxies: Iterable[object] = (),
    *,
    header: ForwardingHeader = "auto",
    ipv6_prefix: int = 64,
) -> ClientIP:
    """Key requests by client address.

    ``trusted_proxies``: networks of your reverse proxies (``["10.0.0.0/8",
    "127.0.0.1"]``).  Forwarding headers are read only when the peer is one
    of them, right to left, skipping trusted hops.  ``header``: which header
    your proxies write; ``"auto"`` reads whichever one the request carries
    and, when it carries both, believes neither (one of them was passed
    through from the client).  ``ipv6_prefix``: IPv6 clients share one
    bucket per prefix (/64: what one subscriber is usually given).
    """
    return ClientIP(trusted_proxies, header=header, ipv6_prefix=ipv6_prefix)


DEFAULT_KEY = client_ip()


def clean_header_value(value: str | None, max_length: int) -> str | None:
    """A usable header value: printable ASCII, not empty, not longer than ``max_length``."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > max_length or not value.isascii() or not value.isprintable():
        return None
    return value


def clean_key(value: object, max_length: int = MAX_KEY_LENGTH) -> str | None:
    """A key returned by user code, or ``None`` when it is missing or unusable."""
    if isinstance(value, str):
        return value if 0 < len(value) <= max_length else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


HASH_PERSON = b"resilience.key"
"""BLAKE2b personalisation: our digests differ from any other use of the same hash and key."""

MIN_HASH_KEY = 16
MAX_HASH_KEY = 64  # BLAKE2b's key size limit


class KeyHasher:
    """Turns a secret (an API key, a token) into the digest that stands for it in a rate-limit key.

    BLAKE2b, 128-bit digest, hex (32 characters), keyed with ``hash_key``.
    Why this and not a per-process random key: limits on Redis are shared by
    every process and host, and survive restarts; a digest that differed per
    process would split one client over as many buckets as there are
    workers (and forgive it at each restart).  So the hash must be the same
    everywhere, and the choice is between:

    - ``hash_key=<a secret shared by your processes>`` (recommended): the
      digest is a keyed MAC.  Someone who reads the store or the logs cannot
      recover the value, nor test guesses against it.
    - ``hash_key=None`` (the default, so the safe behaviour needs no setup):
      a fixed public key, i.e. an unkeyed, personalised hash.  The value
      cannot be recovered from its digest, but a reader can *confirm a
      guess*.  Harmless for random API keys and tokens (2**100 or more
      guesses); not enough for guessable values: configure a ``hash_key``.

    Hashing costs ~500 ns, so the extractors memoise finished keys per raw
    value (a bounded map, cleared when full): a client's key repeats in every
    request, and a hit costs a dict lookup.
    """

    __slots__ = ("_base", "keyed")

    def __init__(self, hash_key: bytes | str | None = None) -> None:
        if hash_key is None:
            material = b""
        elif isinstance(hash_key, str):
            material = hash_key.encode("utf-8")
        elif isinstance(hash_key, bytes):
            material = hash_key
        else:
            raise ValueError(
                f"hash_key must be bytes, a str or None, got {type(hash_key).__name__}"
            )
        if hash_key is not None and not MIN_HASH_KEY <= len(material) <= MAX_HASH_KEY:
            raise ValueError(
                f"hash_key must be {MIN_HASH_KEY} to {MAX_HASH_KEY} bytes "
                f"(e.g. secrets.token_bytes(32)), got {len(material)}"
            )
        self.keyed = hash_key is not None
        self._base = hashlib.blake2b(digest_size=16, key=material, person=HASH_PERSON)

    def digest(self, value: str) -> str:
        """The hex digest standing for ``value`` (the same in every process with the same key)."""
        hasher = self._base.copy()
        hasher.update(value.encode("utf-8", "surrogatepass"))
        return hasher.hexdigest()

    def __repr__(self) -> str:  # never shows the key
        return f"KeyHasher(keyed={self.keyed})"


DEFAULT_HASHER = KeyHasher()


def _hasher(secret: bool, hash_key: bytes | str | None) -> KeyHasher | None:
    if not isinstance(secret, bool):
        raise ValueError(f"secret must be True or False, got {secret!r}")
    if not secret:
        if hash_key is not None:
            raise ValueError("hash_key applies to secret values only; drop it or set secret=True")
        return None
    return DEFAULT_HASHER if hash_key is None else KeyHasher(hash_key)


class HeaderKey(RequestKey):
    """Key by one request header (an API key, a tenant id); fall back when absent or bad.

    A repeated header is treated as malformed (which copy would count?), as is a
    value that is not printable ASCII or longer than ``max_length``.  With
    ``secret=True`` (the default) the key is ``<name>#<digest>`` and the value
    itself goes no further than this object; ``secret=False`` keys by
    ``<name>=<value>``, readable in the store and the logs.
    """

    __slots__ = ("_bname", "_hasher", "_memo", "_prefix", "fallback", "max_length", "name")

    def __init__(
        self,
        name: str,
        *,
        fallback: RequestKey | None = None,
        max_length: int = MAX_KEY_LENGTH,
        secret: bool = True,
        hash_key: bytes | str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name or not name.isascii() or " " in name:
            raise ValueError(f"name must be an HTTP header name, got {name!r}")
        _validate.whole_number(max_length, "max_length")
        if fallback is not None and not isinstance(fallback, RequestKey):
            raise ValueError(
                f"fallback must be a key extractor such as client_ip(), got {fallback!r}"
            )
        self.name = name.lower()
        self._bname = self.name.encode("ascii")
        self._hasher = _hasher(secret, hash_key)
        self._prefix = self.name + ("=" if self._hasher is None else "#")
        self.fallback = DEFAULT_KEY if fallback is None else fallback
        self.max_length = max_length
        # Raw header value -> finished key: a client's value repeats in every request.
        self._memo: dict[object, str] = {}

    @property
    def secret(self) -> bool:
        return self._hasher is not None

    def from_scope(self, scope: Mapping[str, Any]) -> str:
        found: bytes | None = None
        bname = self._bname
        for name, value in scope.get("headers", ()):
            if name == bname:
                if found is not None:
                    return self.fallback.from_scope(scope)
                found = value
        if found is not None:
            key = self._memo.get(found)
            if key is not None:
                return key
            text = found.decode("latin-1") if isinstance(found, bytes) else str(found)
            key = self._key_of(found, text)
            if key is not None:
                return key
        return self.fallback.from_scope(scope)

    def from_request(self, request: object, peer: str | None, headers: HeaderLookup) -> str:
        values = headers(self.name)
        if len(values) == 1:
            raw = values[0]
            key = self._memo.get(raw)
            if key is not None:
                return key
            key = self._key_of(raw, raw)
            if key is not None:
                return key
        return self.fallback.from_request(request, peer, headers)

    def _key_of(self, raw: object, text: str) -> str | None:
        """The key for a header value not seen lately (``None``: unusable), memoised."""
        value = clean_header_value(text, self.max_length)
        if value is None:
            return None
        hasher = self._hasher
        key = self._prefix + (value if hasher is None else hasher.digest(value))
        memo = self._memo
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[raw] = key
        return key

    def __repr__(self) -> str:
        return f"header({self.name!r}, fallback={self.fallback!r}, secret={self.secret})"


def header(
    name: str,
    *,
    fallback: RequestKey | None = None,
    max_length: int = MAX_KEY_LENGTH,
    secret: bool = True,
    hash_key: bytes | str | None = None,
) -> HeaderKey:
    """Key by the header ``name`` (e.g. ``"X-API-Key"``); else by ``fallback`` (the client IP).

    ``secret=True`` (default): the value reaches the store, events and logs
    only as a BLAKE2b digest, keyed with ``hash_key`` when given (use the same
    secret in every process that shares a store; see :class:`KeyHasher`).
    ``secret=False``: the value is kept readable (a tenant id, a client name).
    """
    return HeaderKey(
        name, fallback=fallback, max_length=max_length, secret=secret, hash_key=hash_key
    )


class CallableKey(RequestKey):
    """Key by your own function of the request (ASGI scope or aiohttp request).

    The function returns a string (or an int such as a user id), or ``None``
    when it has nothing to say (an anonymous request): the ``fallback`` then
    decides.  An empty, over-long or non-string result counts as ``None``.
    Exceptions it raises propagate: they are bugs, not client input.  A
    function that returns a secret (a session cookie, a token from the query
    string) should say so with ``secret=True``: its result then becomes
    ``#<digest>`` before it reaches the store (see :class:`KeyHasher`).
    """

    __slots__ = ("_hasher", "_memo", "fallback", "fn", "max_length")

    def __init__(
        self,
        fn: Callable[[Any], object],
        *,
        fallback: RequestKey | None = None,
        max_length: int = MAX_KEY_LENGTH,
        secret: bool = False,
        hash_key: bytes | str | None = None,
    ) -> None:
        if not callable(fn) or isinstance(fn, RequestKey):
            raise ValueError(f"key must be a callable or a key extractor, got {fn!r}")
        if fallback is not None and not isinstance(fallback, RequestKey):
            raise ValueError(
                f"fallback must be a key extractor such as client_ip(), got {fallback!r}"
            )
        _validate.whole_number(max_length, "max_length")
        self.fn = fn
        self.fallback = DEFAULT_KEY if fallback is None else fallback
        self.max_length = max_length
        self._hasher = _hasher(secret, hash_key)
        self._memo: dict[str, str] = {}

    @property
    def secret(self) -> bool:
        return self._hasher is not None

    def from_scope(self, scope: Mapping[str, Any]) -> str:
        key = clean_key(self.fn(scope), self.max_length)
        if key is None:
            return self.fallback.from_scope(scope)
        return key if self._hasher is None else self._hashed(key)

    def from_request(self, request: object, peer: str | None, headers: HeaderLookup) -> str:
        key = clean_key(self.fn(request), self.max_length)
        if key is None:
            return self.fallback.from_request(request, peer, headers)
        return key if self._hasher is None else self._hashed(key)

    def _hashed(self, value: str) -> str:
        memo = self._memo
        key = memo.get(value)
        if key is None:
            assert self._hasher is not None
            key = "#" + self._hasher.digest(value)
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[value] = key
        return key

    def __repr__(self) -> str:
        return f"key_from({self.fn!r}, fallback={self.fallback!r}, secret={self.secret})"


def key_from(
    fn: Callable[[Any], object],
    *,
    fallback: RequestKey | None = None,
    max_length: int = MAX_KEY_LENGTH,
    secret: bool = False,
    hash_key: bytes | str | None = None,
) -> CallableKey:
    """Key by ``fn(request)`` (e.g. the authenticated user); else by ``fallback``.

    ``secret=True`` when ``fn`` returns a credential (a cookie, a token): the
    result is then hashed as :func:`header` hashes values.
    """
    return CallableKey(
        fn, fallback=fallback, max_length=max_length, secret=secret, hash_key=hash_key
    )


def as_key(value: object, field: str = "key") -> RequestKey:
    """A key extractor from what a user passed as ``key=``: an extractor or a callable."""
    if isinstance(value, RequestKey):
        return value
    if callable(value):
        return CallableKey(value)
    raise ValueError(
        f"{field} must be client_ip(...), header(...), key_from(...) or a callable, got {value!r}"
    )
