"""Claim check core: envelopes, tickets, lifetimes, errors, the local stores."""

from __future__ import annotations

import asyncio
import io
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience import (
    ClaimCheck,
    Envelope,
    EventBus,
    FileBlobStore,
    MemoryBlobStore,
    PayloadCorrupt,
    PayloadMissing,
    StoreFull,
    TicketExpired,
    TicketInvalid,
)
from resilience.claimcheck import ClaimCheckedIn, ClaimRedeemed, TicketRejected
from resilience.claimcheck.tickets import b64d, b64e
from resilience.testing import FakeClock
from tests.claimcheck_contract import SECRET, check_store_contract

KEY = SECRET


def make(store: object | None = None, **options: object) -> ClaimCheck:
    options.setdefault("clock", FakeClock(1_000_000.0))
    return ClaimCheck(MemoryBlobStore() if store is None else store, KEY, **options)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "file"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    return MemoryBlobStore(10**8) if request.param == "memory" else FileBlobStore(tmp_path)


def test_store_contract_memory() -> None:
    check_store_contract(lambda: MemoryBlobStore(10**8))


def test_store_contract_file(tmp_path: Path) -> None:
    check_store_contract(lambda: FileBlobStore(tmp_path / "blobs"))


def test_small_payloads_travel_inline_and_large_ones_by_ticket() -> None:
    store = MemoryBlobStore()
    cc = make(store, threshold=100)
    small = cc.check_in(b"x" * 99, metadata={"kind": "small"})
    assert small.inline == b"x" * 99 and small.ticket is None
    assert small.metadata == {"kind": "small"}
    assert len(store) == 0
    big = cc.check_in(b"x" * 100)
    assert big.inline is None and big.ticket is not None
    assert len(store) == 1
    for env in (small, big):
        assert Envelope.from_bytes(bytes(env)) == env
        assert cc.redeem(bytes(env)) == (env.inline or b"x" * 100)


def test_envelope_is_compact_json() -> None:
    env = Envelope(inline=b"\x00\xff", metadata={"a": [1, "b"]})
    assert bytes(env) == b'{"v":1,"i":"AP8","m":{"a":[1,"b"]}}'


def test_sources_file_iterable_bytearray(any_store: object) -> None:
    cc = make(any_store, threshold=10, chunk_size=7)
    data = os.urandom(1000)
    for source in (
        io.BytesIO(data),
        iter([data[:3], data[3:500], b"", data[500:]]),
        bytearray(data),
    ):
        assert cc.redeem(cc.check_in(source)) == data  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        cc.check_in("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        cc.check_in([b"a" * 20, "b"])  # type: ignore[list-item]


def test_streamed_check_in_never_holds_the_payload(tmp_path: Path) -> None:
    """64 MiB from a generator: peak traced memory stays near a few chunks."""
    chunk = os.urandom(1024 * 1024)

    def source() -> Iterator[bytes]:
        for _ in range(64):
            yield chunk

    cc = make(FileBlobStore(tmp_path, fsync=False))
    tracemalloc.start()
    try:
        env = cc.check_in(source())
        with cc.open(env) as f:
            while f.read(1024 * 1024):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 16 * 1024 * 1024, peak  # the DESIGN bar; a 64 MiB payload went through


def test_release_keeps_payloads_other_tickets_hold() -> None:
    store = MemoryBlobStore()
    cc = make(store, threshold=1)
    a, b = cc.check_in(b"same bytes"), cc.check_in(b"same bytes")
    assert len(store) == 1
    assert cc.release(a) is False
    assert cc.release(a) is False  # a redelivered release takes nothing from b
    assert cc.redeem(b) == b"same bytes"
    assert cc.release(b) is True
    assert len(store) == 0 and store.used_bytes == 0


def test_expiry_is_exact() -> None:
    clock = FakeClock(5000.0)
    cc = make(threshold=1, ttl=30.0, clock=clock)
    env = cc.check_in(b"payload")
    clock.advance(29.999)
    assert cc.redeem(env) == b"payload"
    clock.set(5030.0)
    with pytest.raises(TicketExpired) as info:
        cc.redeem(env)
    assert info.value.expires_at == 5030.0


def test_clock_without_wall_time_is_refused() -> None:
    class Mono:
        def monotonic(self) -> float:
            return 0.0

    with pytest.raises(ValueError, match=r"time\(\)"):
        ClaimCheck(MemoryBlobStore(), KEY, clock=Mono())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"threshold": -1}, "threshold"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_options_are_validated(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        make(**options)


@pytest.mark.parametrize("secret", [b"short", {}, {"bad kid!": KEY}, {"k": "not bytes"}], ids=str)
def test_secrets_are_validated(secret: object) -> None:
    with pytest.raises(ValueError, match="secret"):
        ClaimCheck(MemoryBlobStore(), secret)  # type: ignore[arg-type]


def test_metadata_must_be_json() -> None:
    cc = make()
    with pytest.raises(ValueError, match="metadata"):
        cc.check_in(b"x", metadata={"a": object()})
    with pytest.raises(ValueError, match="metadata"):
        cc.check_in(b"x", metadata={"a": float("nan")})


def test_key_rotation() -> None:
    store = MemoryBlobStore()
    clock = FakeClock(0.0)
    old = ClaimCheck(store, {"2025": b"o" * 32}, threshold=1, clock=clock)
    new = ClaimCheck(store, {"2026": b"n" * 32, "2025": b"o" * 32}, threshold=1, clock=clock)
    retired = ClaimCheck(store, {"2026": b"n" * 32}, threshold=1, clock=clock)
    env = old.check_in(b"payload")
    assert new.redeem(env) == b"payload"
    fresh = new.check_in(b"payload")
    assert fresh.ticket is not None and fresh.ticket.startswith("2026.")
    with pytest.raises(TicketInvalid, match="unknown key id"):
        retired.redeem(env)
    assert retired.redeem(fresh) == b"payload"


def test_forged_and_altered_tickets() -> None:
    cc = make(threshold=1)
    other = ClaimCheck(MemoryBlobStore(), b"another secret, 32 bytes long!!!", threshold=1)
    env = cc.check_in(b"payload", metadata={"user": 1})
    with pytest.raises(TicketInvalid, match="signature"):
        cc.redeem(other.check_in(b"payload", metadata={"user": 1}))
    with pytest.raises(TicketInvalid, match="metadata"):
        cc.redeem(Envelope(ticket=env.ticket, metadata={"user": 2}))
    assert env.ticket is not None
    kid, body, mac = env.ticket.split(".")
    for token in (
        f"{kid}.{body}",
        f"{kid}.{body}.{mac}.",
        f"{kid}.{body}.{mac[:-1]}",
        "",
        "..",
        "k0",
    ):
        with pytest.raises(TicketInvalid):
            cc.redeem(token)
    # a valet token is not a claim ticket, and the reverse
    valet = cc.grant(env)
    with pytest.raises(TicketInvalid):
        cc.redeem(valet)
    with pytest.raises(TicketInvalid):
        cc.verify_grant(env.ticket)


def test_non_canonical_base64_is_rejected() -> None:
    raw = os.urandom(32)
    text = b64e(raw)
    assert b64d(text) == raw
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = text[:-1] + last[last.index(text[-1]) ^ 1]  # flips an unused low bit
    with pytest.raises(TicketInvalid):
        b64d(twin)
    for bad in ("a+b/", "ab=", "a", "ab c"):
        with pytest.raises(TicketInvalid):
            b64d(bad)


def test_corrupt_and_missing_payloads(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    cc = make(store, threshold=1, chunk_size=1000)
    data = os.urandom(10_000)
    env = cc.check_in(data)
    ticket = cc.ticket(env)
    assert ticket is not None
    path = tmp_path / "blobs" / ticket.blob_id
    flipped = bytearray(data)
    flipped[5000] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(PayloadCorrupt, match="digest"):
        cc.redeem(env)
    reader = cc.open(env)
    assert reader.read(4000) == flipped[:4000]  # streamed: the check comes at the end
    with pytest.raises(PayloadCorrupt):
        reader.read()
    path.write_bytes(data[:-1])
    with pytest.raises(PayloadCorrupt, match="bytes"):
        cc.redeem(env)
    path.write_bytes(data + b"!")
    with pytest.raises(PayloadCorrupt, match="longer"):
        cc.redeem(env)
    path.unlink()
    with pytest.raises(PayloadMissing):
        cc.redeem(env)
    with pytest.raises(PayloadMissing):
        cc.open(env)


def test_memory_store_is_bounded() -> None:
    store = MemoryBlobStore(max_bytes=1250)
    cc = make(store, threshold=1, chunk_size=100)
    cc.check_in(b"a" * 600)
    with pytest.raises(StoreFull):
        cc.check_in(b"b" * 700)
    assert store.used_bytes == 600  # the failed upload gave its reservation back
    cc.check_in(b"a" * 600)  # the same bytes are kept once (the upload counted meanwhile)
    assert store.used_bytes == 600


def test_file_store_failed_commit_leaves_nothing(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    writer = store.begin()
    writer.write(b"abc")
    with pytest.raises(ValueError, match="size"):
        store.commit(writer, "0" * 64, 4, "r", None, 0.0)
    with pytest.raises(ValueError, match="digest"):
        store.commit(store.begin(), "../x", 0, "r", None, 0.0)
    assert os.listdir(tmp_path / "blobs") == []


def test_grant_and_verify() -> None:
    clock = FakeClock(100.0)
    cc = make(threshold=1, ttl=60.0, clock=clock)
    env = cc.check_in(b"payload")
    token = cc.grant(env, ttl=10.0)
    grant = cc.verify_grant(token)
    assert (grant.size, grant.expires_at) == (7, 110.0)
    assert cc.verify_grant(cc.grant(env, ttl=1000.0)).expires_at == 160.0  # never past the ticket
    clock.advance(10.0)
    with pytest.raises(TicketExpired):
        cc.verify_grant(token)
    with pytest.raises(ValueError, match="inline"):
        make(threshold=100).grant(make(threshold=100).check_in(b"x"))
    with pytest.raises(ValueError, match="ttl"):
        cc.grant(env, ttl=-1)


def test_events() -> None:
    seen: list[object] = []
    bus = EventBus([seen.append])
    cc = make(threshold=5, events=bus)
    env = cc.check_in(b"0123456789")
    cc.check_in(b"x")
    cc.redeem(env)
    with pytest.raises(TicketInvalid):
        cc.redeem("k0.x.y")
    kinds = [type(e) for e in seen]
    assert kinds == [ClaimCheckedIn, ClaimCheckedIn, ClaimRedeemed, TicketRejected]
    assert seen[1] == ClaimCheckedIn("claimcheck", 1, True)


async def test_async_twins(any_store: object) -> None:
    cc = make(any_store, threshold=10)
    data = os.urandom(100_000)
    envs = await asyncio.gather(*(cc.acheck_in(data, metadata={"i": i}) for i in range(5)))
    assert [await cc.aredeem(e) for e in envs] == [data] * 5
    assert [await cc.arelease(e) for e in envs] == [False] * 4 + [True]
    assert await cc.asweep() == 0


def test_concurrent_check_in_and_release_of_the_same_bytes(tmp_path: Path) -> None:
    """Threads behind a barrier: one copy stored, each ticket one reference, none lost."""
    import threading

    store = FileBlobStore(tmp_path, fsync=False)
    cc = make(store, threshold=1, chunk_size=4096)
    data = os.urandom(50_000)
    keeper = cc.check_in(data)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(10):
                env = cc.check_in(data)
                assert cc.redeem(env) == data
                cc.release(env)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert cc.redeem(keeper) == data  # 80 releases by others took nothing from it
    assert os.listdir(tmp_path / "blobs") == [cc.ticket(keeper).blob_id]  # type: ignore[union-attr]
    assert cc.release(keeper) is True
    assert os.listdir(tmp_path / "blobs") == [] and os.listdir(tmp_path / "tmp") == []


def test_unreadable_reference_file_is_swept(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    cc = make(store, threshold=1)
    env = cc.check_in(b"payload")
    ticket = cc.ticket(env)
    assert ticket is not None
    (tmp_path / "refs" / ticket.blob_id).write_text('{"r": "not a number", "s": [1]}')
    assert store.expired(0.0) == [ticket.blob_id]
    assert cc.sweep() == 1
    with pytest.raises(PayloadMissing):
        cc.redeem(env)


def test_rejections_emit_events_for_malformed_and_missing() -> None:
    seen: list[TicketRejected] = []
    bus = EventBus([seen.append])  # type: ignore[list-item]
    store = MemoryBlobStore()
    cc = make(store, threshold=1, events=bus)
    env = cc.check_in(b"payload")
    with pytest.raises(TicketInvalid):
        cc.redeem(b"{not json")
    store.delete(cc.ticket(env).blob_id)  # type: ignore[union-attr]
    with pytest.raises(PayloadMissing):
        cc.redeem(env)
    rejected = [e.reason for e in seen if isinstance(e, TicketRejected)]
    assert rejected == ["TicketInvalid", "PayloadMissing"]


async def test_file_store_async_path_leaves_the_loop_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acheck_in on FileBlobStore writes and fsyncs in worker threads: a ticker keeps running."""
    import threading

    loop_thread = threading.get_ident()
    seen_threads: set[int] = set()
    store = FileBlobStore(tmp_path)
    original = os.write

    def spying_write(fd: int, data: bytes) -> int:
        seen_threads.add(threading.get_ident())
        return original(fd, data)

    cc = make(store, threshold=1, chunk_size=64 * 1024)
    data = os.urandom(1024 * 1024)
    monkeypatch.setattr(os, "write", spying_write)
    env = await cc.acheck_in(data)
    monkeypatch.undo()
    assert seen_threads and loop_thread not in seen_threads
    assert await cc.aredeem(env) == data


def test_sweep_between_a_writers_create_and_lock_spares_its_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep that lands after a writer created its temporary file but before it took the
    flock must not make that check-in fail (it deleted the file under the writer)."""
    import fcntl

    store = FileBlobStore(tmp_path, fsync=False)
    cc = make(store, threshold=1)
    real_flock = fcntl.flock
    raced: list[int] = []

    def flock_after_a_sweep(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not raced and os.listdir(tmp_path / "tmp"):
            raced.append(store.sweep(0.0))  # another thread's sweep, in the window
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_sweep)
    data = os.urandom(10_000)
    env = cc.check_in(data)
    monkeypatch.undo()
    assert raced == [1]  # the sweep did find the unlocked temporary file
    assert cc.redeem(env) == data
    assert os.listdir(tmp_path / "tmp") == []
