"""Claim check invariants: round trips, tamper evidence, hostile input, same behaviour per store."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from resilience import (
    ClaimCheck,
    Envelope,
    FileBlobStore,
    MemoryBlobStore,
    PayloadMissing,
    TicketExpired,
    TicketInvalid,
)
from resilience.events import EventBus
from resilience.testing import FakeClock

KEY = b"0123456789abcdef0123456789abcdef"
CC = ClaimCheck(
    MemoryBlobStore(10**9), KEY, threshold=16, ttl=3600.0, clock=FakeClock(10**6), events=EventBus()
)

metadata = st.dictionaries(
    st.text(max_size=5),
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    max_size=3,
)


@given(payload=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000)), meta=metadata,
       chunk=st.integers(1, 700))  # fmt: skip
@settings(max_examples=150)
def test_round_trip_any_payload_and_chunking(
    payload: bytes, cuts: list[int], meta: dict[str, Any], chunk: int
) -> None:
    cc = ClaimCheck(CC.store, KEY, threshold=16, chunk_size=chunk, clock=FakeClock(10**6))
    bounds = sorted({0, len(payload), *(c for c in cuts if c <= len(payload))})
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    env = cc.check_in(iter(pieces), metadata=meta)
    assert (env.inline is not None) == (len(payload) < 16)
    raw = bytes(env)
    assert Envelope.from_bytes(raw) == env
    assert cc.redeem(raw) == payload
    assert cc.open(raw).read() == payload
    cc.release(raw)


_ENVS = [CC.check_in(b"a stored payload, long enough", metadata={"k": [1, 2]}) for _ in range(2)]


@given(data=st.data())
@settings(max_examples=300)
def test_any_single_byte_change_to_a_ticket_is_rejected(data: st.DataObject) -> None:
    env = data.draw(st.sampled_from(_ENVS))
    token = env.ticket
    assert token is not None
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[position]))
    altered = token[:position] + replacement + token[position + 1 :]
    try:
        CC.redeem(altered)
    except TicketInvalid:
        pass
    else:
        raise AssertionError(f"altered ticket accepted at {position}: {altered!r}")
    raw = bytearray(bytes(env))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    try:
        CC.redeem(bytes(raw))
    except TicketInvalid:
        pass
    else:  # a change in JSON whitespace-free syntax that keeps meaning is impossible here
        raise AssertionError(f"altered envelope accepted: {bytes(raw)!r}")


@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_envelopes_raise_only_ticket_invalid(raw: bytes) -> None:
    for attempt in (lambda: Envelope.from_bytes(raw), lambda: CC.redeem(raw), lambda: CC.open(raw)):
        with contextlib.suppress(TicketInvalid):
            attempt()


@given(text=st.text(max_size=300) | st.from_regex(r"k0\.[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,50}"))
@settings(max_examples=300)
def test_hostile_tickets_raise_only_ticket_invalid(text: str) -> None:
    for attempt in (
        lambda: CC.redeem(text),
        lambda: CC.verify_grant(text),
        lambda: CC.release(text),
    ):
        with contextlib.suppress(TicketInvalid):
            attempt()


def test_hostile_json_nesting() -> None:
    for raw in (b"[" * 100_000, b'{"v":1,"m":' + b"[" * 100_000):
        try:
            Envelope.from_bytes(raw)
        except TicketInvalid:
            continue
        raise AssertionError("accepted")


@given(ttl=st.floats(0.001, 10**6), start=st.floats(0, 2e9))
def test_expiry_is_exact_to_the_clock(ttl: float, start: float) -> None:
    clock = FakeClock(start)
    cc = ClaimCheck(CC.store, KEY, threshold=1, ttl=ttl, clock=clock, events=EventBus())
    env = cc.check_in(b"payload")
    ticket = cc.ticket(env)
    assert ticket is not None and ticket.expires_at == start + ttl
    clock.set(start + ttl)
    try:
        cc.redeem(env)
    except TicketExpired as exc:
        assert exc.expires_at == start + ttl
    else:
        raise AssertionError("redeemed at its expiry")


class StoresAgree(RuleBasedStateMachine):
    """Memory and file stores answer every operation sequence identically."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(1000.0)
        self.dir = tempfile.TemporaryDirectory()
        stores = [MemoryBlobStore(10**8), FileBlobStore(self.dir.name, fsync=False)]
        self.ccs = [
            ClaimCheck(
                s, KEY, threshold=4, ttl=10.0, clock=self.clock, chunk_size=5, events=EventBus()
            )
            for s in stores
        ]
        self.envs: list[list[Envelope]] = [[], []]

    def teardown(self) -> None:
        self.dir.cleanup()

    def _all(self, fn: Any) -> list[Any]:
        out = []
        for i, cc in enumerate(self.ccs):
            try:
                out.append(("ok", fn(i, cc)))
            except (PayloadMissing, TicketExpired) as exc:
                out.append(("error", type(exc).__name__))
        assert out[0] == out[1], out
        return out

    @rule(payload=st.sampled_from([b"", b"abc", b"abcdef", b"0123456789abc", b"z" * 33]))
    def check_in(self, payload: bytes) -> None:
        for i, cc in enumerate(self.ccs):
            self.envs[i].append(cc.check_in(payload))

    @precondition(lambda self: self.envs[0])
    @rule(index=st.integers(0, 100))
    def redeem(self, index: int) -> None:
        k = index % len(self.envs[0])
        self._all(lambda i, cc: cc.redeem(self.envs[i][k]))

    @precondition(lambda self: self.envs[0])
    @rule(index=st.integers(0, 100))
    def release(self, index: int) -> None:
        k = index % len(self.envs[0])
        self._all(lambda i, cc: cc.release(self.envs[i][k]))

    @rule(seconds=st.sampled_from([0.5, 3.0, 10.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def sweep(self) -> None:
        self._all(lambda i, cc: cc.sweep())

    @invariant()
    def same_expired(self) -> None:
        now = self.clock.time()
        assert sorted(self.ccs[0].store.expired(now)) == sorted(self.ccs[1].store.expired(now))


StoresAgree.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestStoresAgree = StoresAgree.TestCase


def test_every_single_character_change_to_a_ticket_is_rejected() -> None:
    """Exhaustive over positions and the token alphabet (catches second base64 spellings)."""
    token = _ENVS[0].ticket
    assert token is not None
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    accepted = []
    for position in range(len(token)):
        for char in alphabet:
            if char == token[position]:
                continue
            altered = token[:position] + char + token[position + 1 :]
            try:
                CC.ticket(altered)
            except TicketInvalid:
                continue
            accepted.append(altered)
    assert accepted == []


_RANGE_DIR = tempfile.TemporaryDirectory()
_RANGE_STORES = [MemoryBlobStore(10**8), FileBlobStore(_RANGE_DIR.name, chunk_size=7, fsync=False)]


@given(
    payload=st.binary(min_size=1, max_size=200),
    start=st.integers(-5, 250),
    end=st.none() | st.integers(-5, 250),
    chunk=st.integers(1, 50),
)
@settings(max_examples=200)
def test_ranged_reads_match_slicing_on_every_store(
    payload: bytes, start: int, end: int | None, chunk: int
) -> None:
    expected = payload[max(0, start) : end if end is None else max(0, end)]
    for store in _RANGE_STORES:
        cc = ClaimCheck(store, KEY, threshold=0, chunk_size=chunk, events=EventBus())
        env = cc.check_in(payload)
        ticket = cc.ticket(env)
        assert ticket is not None
        reader = store.reader(ticket.blob_id, start, end)
        got = b""
        while piece := reader.read_chunk():
            got += piece
        reader.close()
        assert got == expected, (store, start, end)
        cc.release(env)
