"""The framework-free HTTP core: key checks, fingerprints, the stored-response envelope."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from resilience.web.idempotency import (
    HOP_BY_HOP,
    IdempotencyCore,
    decode_response,
    encode_response,
    encode_truncated,
    storable,
)

NAMES = st.one_of(
    st.sampled_from(sorted(HOP_BY_HOP)),
    st.binary(min_size=1, max_size=20).filter(lambda b: b.lower() not in HOP_BY_HOP),
)


@given(
    status=st.integers(100, 599),
    headers=st.lists(st.tuples(NAMES, st.binary(max_size=300)), max_size=12),
    body=st.binary(max_size=4000),
)
def test_envelope_round_trips_without_hop_by_hop_headers(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    stored = decode_response(encode_response(status, headers, body))
    assert stored.replayable and stored.status == status and stored.body == body
    assert stored.headers == [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP]


def test_truncated_marker() -> None:
    stored = decode_response(encode_truncated(201))
    assert (stored.replayable, stored.status, stored.body) == (False, 201, b"")


def test_storable_statuses() -> None:
    assert [s for s in (200, 201, 302, 400, 404, 422) if storable(s)] == [
        200,
        201,
        302,
        400,
        404,
        422,
    ]
    assert not any(storable(s) for s in (408, 409, 425, 429, 500, 502, 503))


def test_key_checks() -> None:
    core = IdempotencyCore(required=True)
    assert core.check_key([b"abc"]) == ("abc", None)
    assert core.check_key([b'"abc"']) == ("abc", None)
    for bad in ([], [b""], [b'""'], [b"x" * 256], [b"\xc3\xa9"], [b"a", b"b"], [b"a\x01"]):
        key, refusal = core.check_key(bad)
        assert key is None and refusal is not None and refusal.status == 400
    assert IdempotencyCore().check_key([]) == (None, None)  # optional: pass through


def test_fingerprint_and_record_key_separate_what_they_must() -> None:
    fp = IdempotencyCore.fingerprint
    base = fp("POST", "/a", b"q=1", b"application/json", b"{}")
    assert base == fp("POST", "/a", b"q=1", b"application/json", b"{}")
    for other in [
        fp("PATCH", "/a", b"q=1", b"application/json", b"{}"),
        fp("POST", "/b", b"q=1", b"application/json", b"{}"),
        fp("POST", "/a", b"q=2", b"application/json", b"{}"),
        fp("POST", "/a", b"q=1", b"text/plain", b"{}"),
        fp("POST", "/a", b"q=1", b"application/json", b"{ }"),
    ]:
        assert other != base
    rk = IdempotencyCore.record_key
    keys = {
        rk("alice", "POST", "/a", "k"),
        rk("bob", "POST", "/a", "k"),
        rk(None, "POST", "/a", "k"),
        rk("alice", "PATCH", "/a", "k"),
        rk("alice", "POST", "/b", "k"),
    }
    assert len(keys) == 5


def test_record_key_cache_holds_no_long_paths_or_principals() -> None:
    """Clients choose paths and principals (an Authorization header): caching 4096 of
    them at 16 KiB each would pin 64 MiB per process."""
    from resilience.web import idempotency as web_idempotency

    rk = IdempotencyCore.record_key
    long_path = "/" + "p" * 16_000
    long_user = "Bearer " + "t" * 16_000
    first = rk(None, "POST", long_path, "k")
    assert first == rk(None, "POST", long_path, "k")  # hashed again: the same record
    assert rk(long_user, "POST", "/a", "k") != rk(None, "POST", "/a", "k")
    for i in range(100):
        rk(long_user, "POST", f"{long_path}{i}", "k")
    held = sum(len(p) + len(w or "") for w, _, p in web_idempotency._SCOPES)
    assert held <= 512 * len(web_idempotency._SCOPES)
