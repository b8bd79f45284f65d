"""A stateful hypothesis machine checking any idempotency store against a plain model.

Shared by the property tests (memory store) and the integration tests
(SQLite and Redis, and the differential run of all three): subclasses say
how to make the store.  Times are multiples of 1/8 s on a fake timeline, so
every store (Lua doubles included) computes the same expiries bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from resilience.errors import StoreFull

KEYS = ["a", "b", "c", "d"]
FPS = ["f1", "f2"]
DURATIONS = st.sampled_from([0.125, 0.5, 1.0, 2.0, 3.0])
STEPS = st.sampled_from([0.0, 0.125, 0.5, 1.0, 2.5])


@dataclass
class Model:
    done: bool
    fingerprint: str
    token: str
    expires: float
    result: bytes | None = None


class IdempotencyStoreMachine(RuleBasedStateMachine):
    """The model: a dict of records that never forgets anything but expiry."""

    bounded = False  # a bounded store may drop completed records (never running ones)
    max_keys = 0  # when bounded: StoreFull only once this many live records are running

    def __init__(self) -> None:
        super().__init__()
        self.store = self.make_store()
        self.now = 1000.0
        self.model: dict[str, Model] = {}
        self.tokens: dict[str, list[str]] = {k: [] for k in KEYS}
        self.serial = 0

    def make_store(self) -> Any:
        raise NotImplementedError

    def teardown(self) -> None:
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def live(self, key: str) -> Model | None:
        record = self.model.get(key)
        if record is None or self.now >= record.expires:
            return None
        return record

    def owned(self, key: str, token: str) -> Model | None:
        record = self.live(key)
        if record is None or record.done or record.token != token:
            return None
        return record

    def pick_token(self, key: str, index: int) -> str:
        issued = self.tokens[key]
        return issued[index % len(issued)] if issued and index >= 0 else "never-issued"

    @rule(step=STEPS)
    def advance(self, step: float) -> None:
        self.now += step

    @rule(key=st.sampled_from(KEYS), fp=st.sampled_from(FPS), lease=DURATIONS)
    def begin(self, key: str, fp: str, lease: float) -> None:
        self.serial += 1
        token = f"t{self.serial:04d}"
        current = self.live(key)
        try:
            claim = self.store.begin(key, fp, token, lease, self.now)
        except StoreFull:
            assert self.bounded and current is None
            running = [k for k in KEYS if (r := self.live(k)) is not None and not r.done]
            assert len(running) >= self.max_keys
            return
        if current is None:
            assert claim.status == "acquired", claim
            self.model[key] = Model(False, fp, token, self.now + lease)
            self.tokens[key].append(token)
        elif current.fingerprint != fp:
            assert claim.status == "reused", claim
        elif current.done:
            assert (claim.status, claim.result) == ("replay", current.result), claim
        else:
            assert claim.status == "in_progress", claim
            assert claim.retry_after == current.expires - self.now

    @rule(key=st.sampled_from(KEYS), index=st.integers(-1, 3), lease=DURATIONS)
    def begin_again(self, key: str, index: int, lease: float) -> None:
        """A resent begin (its reply was lost): the holder's own token acquires again."""
        token = self.pick_token(key, index)
        record = self.live(key)
        if record is None:
            return  # an absent key: plain begin covers it
        claim = self.store.begin(key, record.fingerprint, token, lease, self.now)
        if record.done:
            assert (claim.status, claim.result) == ("replay", record.result), claim
        elif record.token == token:
            assert claim.status == "acquired", claim
            record.expires = self.now + lease
        else:
            assert claim.status == "in_progress", claim

    @rule(key=st.sampled_from(KEYS), index=st.integers(-1, 3), lease=DURATIONS)
    def renew(self, key: str, index: int, lease: float) -> None:
        token = self.pick_token(key, index)
        record = self.owned(key, token)
        assert self.store.renew(key, token, lease, self.now) == (record is not None)
        if record is not None:
            record.expires = self.now + lease

    @rule(key=st.sampled_from(KEYS), index=st.integers(-1, 3), ttl=DURATIONS)
    def complete(self, key: str, index: int, ttl: float) -> None:
        token = self.pick_token(key, index)
        record = self.owned(key, token)
        result = f"r-{token}".encode() + bytes(range(256))[::37]  # binary-safe
        assert self.store.complete(key, token, result, ttl, self.now) == (record is not None)
        if record is not None:
            record.done, record.result, record.expires = True, result, self.now + ttl

    @rule(key=st.sampled_from(KEYS), index=st.integers(-1, 3))
    def release(self, key: str, index: int) -> None:
        token = self.pick_token(key, index)
        record = self.owned(key, token)
        assert self.store.release(key, token, self.now) == (record is not None)
        if record is not None:
            del self.model[key]

    @invariant()
    def records_match(self) -> None:
        for key in KEYS:
            expected = self.live(key)
            got = self.store.get(key, self.now)
            if got is None and expected is not None and expected.done and self.bounded:
                del self.model[key]  # evicted to make room: allowed for completed records only
                continue
            if expected is None:
                assert got is None, (key, got)
                continue
            assert got is not None, (key, expected)
            assert (got.done, got.fingerprint, got.token, got.expires, got.result) == (
                expected.done,
                expected.fingerprint,
                expected.token,
                expected.expires,
                expected.result,
            )
