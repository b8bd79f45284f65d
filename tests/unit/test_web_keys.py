"""Key extraction: trusted proxies right to left, IPv6 /64 grouping, fallbacks, bad input."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.web.addresses import forwarded_hops, parse_address, xff_hops
from resilience.web.request_keys import NO_PEER, client_ip, header, key_from


def scope(peer: str | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": None if peer is None else (peer, 5000),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
    }


def lookup(*headers: tuple[str, str]) -> Any:
    def values(name: str) -> list[str]:
        return [v for k, v in headers if k.lower() == name]

    return values


def both(key: Any, peer: str | None, *headers: tuple[str, str]) -> str:
    """The key via the ASGI path and via the generic path; they must agree."""
    via_scope = key.from_scope(scope(peer, *headers))
    via_parts = key.from_request(object(), peer, lookup(*headers))
    assert via_scope == via_parts
    return str(via_scope)


PROXIES = client_ip(trusted_proxies=["10.0.0.0/8", "127.0.0.1", "fd00::/8"])


def test_direct_peer_is_the_key() -> None:
    assert both(client_ip(), "203.0.113.5") == "203.0.113.5"
    assert both(client_ip(), "2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert both(client_ip(), "::ffff:198.51.100.9") == "198.51.100.9"
    assert both(client_ip(), None) == NO_PEER


def test_untrusted_peer_cannot_spoof() -> None:
    for key in (client_ip(), client_ip(trusted_proxies=["10.0.0.0/8"])):
        assert both(key, "203.0.113.5", ("X-Forwarded-For", "1.2.3.4")) == "203.0.113.5"
        assert both(key, "203.0.113.5", ("Forwarded", "for=1.2.3.4")) == "203.0.113.5"


def test_trusted_chain_is_read_right_to_left() -> None:
    xff = ("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.3, 10.0.0.2")
    assert both(PROXIES, "10.0.0.1", xff) == "203.0.113.7"
    split = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7"), ("X-Forwarded-For", "10.0.0.2")]
    assert both(PROXIES, "10.0.0.1", *split) == "203.0.113.7"
    forwarded = ("Forwarded", 'for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=10.0.0.9')
    assert both(PROXIES, "127.0.0.1", forwarded) == "2001:db8::/64"
    assert both(PROXIES, "10.0.0.1", ("Forwarded", 'For="203.0.113.8:80";by=x')) == "203.0.113.8"


def test_all_trusted_chain_gives_the_leftmost_hop() -> None:
    assert both(PROXIES, "10.0.0.1", ("X-Forwarded-For", "10.0.0.9, 10.0.0.2")) == "10.0.0.9"
    assert both(PROXIES, "10.0.0.1") == "10.0.0.1"


@pytest.mark.parametrize(
    "value",
    [
        "unknown",
        "_hidden",
        "",
        "garbage",
        "1.2.3.4.5",
        "[::1",
        "::1]:80",
        "1.2.3.4:99999",
        "999.1.1.1",
    ],
)
def test_malformed_hop_stops_at_the_last_trusted_one(value: str) -> None:
    assert (
        both(PROXIES, "10.0.0.1", ("X-Forwarded-For", f"6.6.6.6, {value}, 10.0.0.2")) == "10.0.0.2"
    )
    assert both(PROXIES, "10.0.0.1", ("X-Forwarded-For", f"{value}")) == "10.0.0.1"
    assert both(PROXIES, "10.0.0.1", ("Forwarded", f"for={value}")) == "10.0.0.1"


def test_both_headers_present_believes_neither() -> None:
    headers = [("X-Forwarded-For", "1.1.1.1"), ("Forwarded", "for=2.2.2.2")]
    assert both(PROXIES, "10.0.0.1", *headers) == "10.0.0.1"
    xff_only = client_ip(trusted_proxies=["10.0.0.0/8"], header="x-forwarded-for")
    assert both(xff_only, "10.0.0.1", *headers) == "1.1.1.1"
    fwd_only = client_ip(trusted_proxies=["10.0.0.0/8"], header="forwarded")
    assert both(fwd_only, "10.0.0.1", *headers) == "2.2.2.2"


def test_huge_and_repeated_headers() -> None:
    huge = "1" * 65536
    assert both(PROXIES, "10.0.0.1", ("X-Forwarded-For", huge)) == "10.0.0.1"
    assert both(PROXIES, "10.0.0.1", ("X-Forwarded-For", huge + ", 5.5.5.5")) == "5.5.5.5"
    assert both(PROXIES, "10.0.0.1", ("Forwarded", '"' * 65536)) == "10.0.0.1"
    assert both(PROXIES, "10.0.0.1", ("Forwarded", 'for="a,b", for=5.5.5.5')) == "5.5.5.5"
    many_trusted = ", ".join(["10.0.0.5"] * 5000)
    assert both(PROXIES, "10.0.0.1", ("X-Forwarded-For", "9.9.9.9, " + many_trusted)) == "10.0.0.5"
    repeated = [("X-Forwarded-For", "4.4.4.4")] * 100
    assert both(PROXIES, "10.0.0.1", *repeated) == "4.4.4.4"


def test_ipv6_prefix_is_configurable() -> None:
    assert both(client_ip(ipv6_prefix=48), "2001:db8:1:2::1") == "2001:db8:1::/48"
    assert both(client_ip(ipv6_prefix=128), "2001:db8:1:2::1") == "2001:db8:1:2::1"


def blake2b_hex(value: str, key: bytes = b"") -> str:
    """The digest computed independently of the code under test."""
    return hashlib.blake2b(
        value.encode(), digest_size=16, key=key, person=b"resilience.key"
    ).hexdigest()


def test_header_key() -> None:
    key = header("X-API-Key")
    assert both(key, "1.2.3.4", ("X-API-Key", " alice ")) == "x-api-key#" + blake2b_hex("alice")
    readable = header("X-API-Key", secret=False)
    assert both(readable, "1.2.3.4", ("X-API-Key", " alice ")) == "x-api-key=alice"
    assert both(key, "1.2.3.4") == "1.2.3.4"
    assert both(key, "1.2.3.4", ("X-API-Key", "")) == "1.2.3.4"
    assert both(key, "1.2.3.4", ("X-API-Key", "x" * 257)) == "1.2.3.4"
    assert both(key, "1.2.3.4", ("X-API-Key", "caf\u00e9")) == "1.2.3.4"
    assert both(key, "1.2.3.4", ("X-API-Key", "a"), ("X-API-Key", "b")) == "1.2.3.4"
    behind = header("X-API-Key", fallback=PROXIES)
    assert both(behind, "10.0.0.1", ("X-Forwarded-For", "7.7.7.7")) == "7.7.7.7"


SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


@pytest.mark.parametrize("secret_key", [None, b"k" * 32, "a shared deployment secret"])
def test_a_secret_header_leaves_only_as_its_digest(secret_key: bytes | str | None) -> None:
    key = header("X-API-Key", hash_key=secret_key)
    material = secret_key.encode() if isinstance(secret_key, str) else secret_key or b""
    expected = "x-api-key#" + blake2b_hex(SECRET, material)
    for _ in range(2):  # the second answer comes from the memo: the same
        result = both(key, "1.2.3.4", ("X-API-Key", SECRET))
        assert result == expected
        assert SECRET not in result and "sk_live" not in result
    assert SECRET not in repr(key) and "deployment" not in repr(key)
    # A fresh extractor (another process) with the same key material agrees: shared limits.
    assert both(header("X-API-Key", hash_key=secret_key), "9.9.9.9", ("X-API-Key", SECRET)) == (
        expected
    )


def test_keyed_and_unkeyed_digests_differ_and_distinct_values_stay_distinct() -> None:
    plain, keyed = header("X-API-Key"), header("X-API-Key", hash_key=b"s" * 16)
    a = both(plain, "1.2.3.4", ("X-API-Key", "alice"))
    assert a != both(keyed, "1.2.3.4", ("X-API-Key", "alice"))
    assert a != both(plain, "1.2.3.4", ("X-API-Key", "alicf"))
    other_header = header("X-Other")
    assert both(other_header, "1.2.3.4", ("X-Other", "alice")) != a  # the name is part of the key


def test_the_memo_is_bounded_and_survives_garbage() -> None:
    key = header("X-API-Key")
    for i in range(20_000):
        key.from_scope(scope("1.2.3.4", ("X-API-Key", f"k{i}")))
    assert len(key._memo) <= 8192
    assert key.from_scope(scope("1.2.3.4", ("X-API-Key", "x" * 300))) == "1.2.3.4"
    assert not [k for k in key._memo if len(str(k)) > 256]  # unusable values are not kept


def test_a_key_function_returning_a_secret_is_hashed() -> None:
    cookie = key_from(lambda request: request.get("session"), secret=True)
    hashed = cookie.from_scope({**scope("1.2.3.4"), "session": SECRET})
    assert hashed == "#" + blake2b_hex(SECRET) and SECRET not in hashed
    assert cookie.from_scope(scope("1.2.3.4")) == "1.2.3.4"  # the fallback is an address
    user = key_from(lambda request: request.get("user"))  # not a secret by default
    assert user.from_scope({**scope("1.2.3.4"), "user": "u1"}) == "u1"


def test_secret_options_are_validated() -> None:
    with pytest.raises(ValueError, match="hash_key"):
        header("X-API-Key", hash_key=b"short")
    with pytest.raises(ValueError, match="hash_key"):
        header("X-API-Key", hash_key=b"x" * 65)
    with pytest.raises(ValueError, match="hash_key"):
        header("X-API-Key", hash_key=12345678901234567)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hash_key"):
        header("X-Tenant", secret=False, hash_key=b"k" * 32)
    with pytest.raises(ValueError, match="secret"):
        header("X-API-Key", secret="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hash_key"):
        key_from(lambda r: None, secret=True, hash_key=b"tiny")


def test_callable_key() -> None:
    key = key_from(
        lambda request: (
            getattr(request, "user", None)
            or (request.get("user") if isinstance(request, dict) else None)
        )
    )
    assert key.from_scope({**scope("1.2.3.4"), "user": "u1"}) == "u1"
    assert key.from_scope({**scope("1.2.3.4"), "user": 42}) == "42"
    for bad in (None, "", "x" * 1000, 3.5, True, b"bytes"):
        assert key.from_scope({**scope("1.2.3.4"), "user": bad}) == "1.2.3.4"

    def broken(request: object) -> str:
        raise LookupError("a bug in user code")

    with pytest.raises(LookupError):
        key_from(broken).from_scope(scope("1.2.3.4"))


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        client_ip(trusted_proxies=["not-a-network"])
    with pytest.raises(ValueError, match="trusted_proxies"):
        client_ip(trusted_proxies="10.0.0.0/8")
    with pytest.raises(ValueError, match="header"):
        client_ip(header="x-real-ip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ipv6_prefix"):
        client_ip(ipv6_prefix=0)
    with pytest.raises(ValueError, match="name"):
        header("")
    with pytest.raises(ValueError, match="fallback"):
        header("X-Key", fallback="1.2.3.4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        key_from("user")  # type: ignore[arg-type]


# -- properties ----------------------------------------------------------------------------

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)


@settings(max_examples=200, deadline=None)
@given(
    peer=st.one_of(ipv4, ipv6, st.just("10.0.0.1"), st.just("127.0.0.1")),
    values=st.lists(st.tuples(st.sampled_from(["X-Forwarded-For", "Forwarded"]), header_text)),
)
def test_any_header_garbage_gives_a_usable_key(peer: str, values: list[tuple[str, str]]) -> None:
    key = both(PROXIES, peer, *values)
    assert key and len(key) <= 64
    assert parse_address(key.split("/")[0]) is not None


@settings(max_examples=100, deadline=None)
@given(peer=st.one_of(ipv4, ipv6), spoof=header_text)
def test_untrusted_peer_key_ignores_headers(peer: str, spoof: str) -> None:
    if any(
        ipaddress.ip_address(peer) in n
        for n in PROXIES.trusted_proxies
        if n.version == ipaddress.ip_address(peer).version
    ):
        return
    plain = both(PROXIES, peer)
    assert both(PROXIES, peer, ("X-Forwarded-For", spoof)) == plain
    assert both(PROXIES, peer, ("Forwarded", spoof)) == plain


@settings(max_examples=100, deadline=None)
@given(network=st.integers(0, 2**64 - 1), hosts=st.lists(st.integers(0, 2**64 - 1), min_size=2))
def test_ipv6_addresses_of_one_64_share_a_key(network: int, hosts: list[int]) -> None:
    base = 0x2001_0DB8 << 96 | network & (2**32 - 1) << 64
    keys = {both(client_ip(), str(ipaddress.IPv6Address(base | host))) for host in hosts}
    assert len(keys) == 1


@settings(max_examples=100, deadline=None)
@given(
    spoofed=st.lists(st.one_of(ipv4, header_text.filter(lambda t: "," not in t)), max_size=4),
    client=ipv4.filter(lambda a: not a.startswith(("10.", "127."))),
    proxies=st.lists(st.ip_addresses(network="10.0.0.0/8").map(str), max_size=4),
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    spoofed: list[str], client: str, proxies: list[str]
) -> None:
    chain = ", ".join([*spoofed, client, *proxies])
    assert both(PROXIES, "10.0.0.1", ("X-Forwarded-For", chain)) == client


def test_hop_splitting() -> None:
    assert xff_hops(["a, b", "c"]) == ["c", " b", "a"]
    assert forwarded_hops(['for=a;proto=x, for="b,c", by=d']) == ["", "b,c", "a"]


def test_unix_socket_proxy_walks_forwarding_headers_only_when_trusted() -> None:
    from resilience.web.request_keys import NO_PEER, client_ip

    def scope(xff: str | None) -> dict[str, object]:
        headers = [] if xff is None else [(b"x-forwarded-for", xff.encode())]
        return {"type": "http", "client": None, "headers": headers}

    behind_socket = client_ip(trusted_proxies=["unix", "10.0.0.0/8"])
    assert behind_socket(scope("198.51.100.7")) == "198.51.100.7"
    assert behind_socket(scope("203.0.113.9, 10.0.0.2")) == "203.0.113.9"
    assert behind_socket(scope("1.2.3.4, 198.51.100.7")) == "198.51.100.7"  # spoofed left part
    assert behind_socket(scope(None)) == "0.0.0.0"  # nothing forwarded: one bucket per proxy
    assert client_ip()(scope("198.51.100.7")) == NO_PEER  # without "unix", headers are ignored
