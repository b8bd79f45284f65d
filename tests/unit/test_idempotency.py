"""@idempotent on the memory and SQLite stores: the semantics of DESIGN.md section 3.5."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from resilience import (
    EventBus,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidKey,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
    StoreFull,
    idempotent,
)
from resilience.events import Event, IdempotencyConflict, IdempotentReplay
from resilience.idempotency import StoredError
from resilience.idempotency.codec import default_fingerprint
from resilience.idempotency.record import new_token
from resilience.testing import FakeClock


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield MemoryIdempotencyStore()
        return
    made = SQLiteIdempotencyStore(tmp_path / "idem.db", clock="client")
    yield made
    made.close()


class Sink:
    min_level = "debug"

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


# -- the basic contract ---------------------------------------------------------------------


def test_second_call_replays_without_running(store: Any) -> None:
    calls: list[str] = []

    @idempotent(store, key=lambda order, amount: order)
    def charge(order: str, amount: int) -> dict[str, Any]:
        calls.append(order)
        return {"order": order, "amount": amount}

    assert charge("o1", 5) == {"order": "o1", "amount": 5}
    assert charge("o1", 5) == {"order": "o1", "amount": 5}
    assert calls == ["o1"]
    assert charge("o2", 5)["order"] == "o2"
    assert calls == ["o1", "o2"]


def test_async_function_replays(store: Any) -> None:
    calls: list[int] = []

    @idempotent(store, key=lambda n: f"k{n}")
    async def work(n: int) -> list[int]:
        calls.append(n)
        await asyncio.sleep(0)
        return [n, n]

    async def main() -> None:
        assert await work(1) == [1, 1]
        assert await work(1) == [1, 1]

    asyncio.run(main())
    assert calls == [1]


def test_methods_exclude_self_from_the_fingerprint(store: Any) -> None:
    calls: list[int] = []

    class Consumer:
        @idempotent(store, key=lambda self, msg: msg["id"])
        def handle(self, msg: dict[str, Any]) -> int:
            calls.append(msg["id"])
            return int(msg["id"]) * 2

    assert Consumer().handle({"id": "7"}) == 14
    assert Consumer().handle({"id": "7"}) == 14  # another instance: same record
    assert calls == ["7"]


def test_default_key_deduplicates_identical_calls() -> None:
    calls: list[tuple[int, int]] = []

    @idempotent(MemoryIdempotencyStore())
    def add(a: int, b: int) -> int:
        calls.append((a, b))
        return a + b

    assert add(1, 2) == 3 and add(1, 2) == 3 and add(a=1, b=2) == 3
    assert add(2, 1) == 3
    # (1, 2) positionally and as keywords are two fingerprints; (2, 1) a third
    assert calls == [(1, 2), (1, 2), (2, 1)]


def test_key_none_runs_unguarded() -> None:
    calls: list[int] = []

    @idempotent(MemoryIdempotencyStore(), key=lambda n: None)
    def f(n: int) -> int:
        calls.append(n)
        return n

    f(1)
    f(1)
    assert calls == [1, 1]


def test_same_key_other_arguments_raises_reused(store: Any) -> None:
    @idempotent(store, key=lambda order, amount: order)
    def charge(order: str, amount: int) -> int:
        return amount

    charge("o1", 5)
    with pytest.raises(IdempotencyKeyReused) as info:
        charge("o1", 6)
    assert "o1" in str(info.value)


def test_custom_fingerprint_decides_what_counts_as_the_same_request(store: Any) -> None:
    calls = []

    @idempotent(store, key=lambda msg: msg["id"], fingerprint=lambda msg: msg["body"])
    def handle(msg: dict[str, Any]) -> str:
        calls.append(msg)
        return str(msg["body"])

    handle({"id": "1", "body": "x", "delivery": 1})
    assert handle({"id": "1", "body": "x", "delivery": 2}) == "x"  # redelivery: same body
    assert len(calls) == 1
    with pytest.raises(IdempotencyKeyReused):
        handle({"id": "1", "body": "y", "delivery": 3})


def test_keys_are_scoped_per_function(store: Any) -> None:
    @idempotent(store, key=lambda x: "same")
    def one(x: int) -> str:
        return "one"

    @idempotent(store, key=lambda x: "same")
    def two(x: int) -> str:
        return "two"

    assert one(1) == "one" and two(1) == "two"


# -- failures release, store_errors are kept --------------------------------------------------


def test_exception_releases_the_key(store: Any) -> None:
    attempts = []

    @idempotent(store, key=lambda: "k")
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("down")
        return "ok"

    with pytest.raises(ConnectionError):
        flaky()
    assert flaky() == "ok"
    assert flaky() == "ok"
    assert len(attempts) == 2


class Declined(Exception):
    pass


def test_store_errors_are_stored_and_replayed(store: Any) -> None:
    attempts = []

    @idempotent(store, key=lambda: "k", store_errors=(Declined,))
    def charge() -> str:
        attempts.append(1)
        raise Declined("card declined", 402)

    with pytest.raises(Declined):
        charge()
    with pytest.raises(Declined) as info:
        charge()
    assert info.value.args == ("card declined", 402)
    assert len(attempts) == 1


def test_stored_error_no_longer_listed_comes_back_as_stored_error(store: Any) -> None:
    @idempotent(store, key=lambda: "k", store_errors=(Declined,), name="charge")
    def charge() -> str:
        raise Declined("card declined")

    with pytest.raises(Declined):
        charge()

    @idempotent(store, key=lambda: "k", name="charge")
    def charge_v2() -> str:
        return "ran"

    with pytest.raises(StoredError) as info:
        charge_v2()
    assert "Declined" in info.value.type_name and "card declined" in str(info.value)


def test_keyboard_interrupt_releases_the_key(store: Any) -> None:
    attempts = []

    @idempotent(store, key=lambda: "k")
    def f() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise KeyboardInterrupt
        return "ok"

    with pytest.raises(KeyboardInterrupt):
        f()
    assert f() == "ok"


def test_cancellation_releases_the_key(store: Any) -> None:
    started = []

    @idempotent(store, key=lambda inside: "k", fingerprint=lambda inside: "")
    async def slow(inside: asyncio.Event) -> str:
        started.append(1)
        inside.set()
        if len(started) == 1:
            await asyncio.sleep(30)
        return "ok"

    async def main() -> None:
        inside = asyncio.Event()
        task = asyncio.create_task(slow(inside))
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await slow(inside) == "ok"

    asyncio.run(main())
    assert len(started) == 2


def test_unencodable_result_raises_and_releases(store: Any) -> None:
    attempts = []

    @idempotent(store, key=lambda: "k")
    def f() -> object:
        attempts.append(1)
        return {1, 2} if len(attempts) == 1 else [1, 2]

    with pytest.raises(TypeError):
        f()
    assert f() == [1, 2]
    assert f() == [1, 2]
    assert len(attempts) == 2


def test_custom_codec(store: Any) -> None:
    class SetCodec:
        def encode(self, value: Any) -> bytes:
            return ",".join(sorted(value)).encode()

        def decode(self, data: bytes) -> Any:
            return set(data.decode().split(","))

    calls = []

    @idempotent(store, key=lambda: "k", codec=SetCodec())
    def f() -> set[str]:
        calls.append(1)
        return {"a", "b"}

    assert f() == {"a", "b"} and f() == {"a", "b"} and len(calls) == 1


# -- concurrency: in progress, wait, leases, fencing ---------------------------------------


def test_in_progress_without_wait_raises_with_retry_after(store: Any) -> None:
    clock = FakeClock(100.0)
    inside = threading.Event()
    leave = threading.Event()

    @idempotent(store, key=lambda: "k", lease=30.0, clock=clock)
    def slow() -> str:
        inside.set()
        assert leave.wait(10)
        return "done"

    results: list[str] = []
    owner = threading.Thread(target=lambda: results.append(slow()))
    owner.start()
    try:
        assert inside.wait(10)
        clock.advance(10.0)
        with pytest.raises(IdempotencyInProgress) as info:
            slow()
        assert info.value.retry_after == pytest.approx(20.0)
    finally:
        leave.set()
        owner.join(10)
    assert results == ["done"]
    assert slow() == "done"


def test_waiter_gets_the_owners_result(store: Any) -> None:
    inside = threading.Event()
    leave = threading.Event()
    calls = []

    @idempotent(store, key=lambda: "k", wait=10.0)
    def slow() -> str:
        calls.append(1)
        inside.set()
        assert leave.wait(10)
        return "done"

    results: list[str] = []
    owner = threading.Thread(target=lambda: results.append(slow()))
    owner.start()
    assert inside.wait(10)
    waiter = threading.Thread(target=lambda: results.append(slow()))
    waiter.start()
    time.sleep(0.05)
    leave.set()
    owner.join(10)
    waiter.join(10)
    assert results == ["done", "done"] and calls == [1]


def test_waiter_runs_when_the_owner_fails(store: Any) -> None:
    inside = threading.Event()
    leave = threading.Event()
    calls = []

    @idempotent(store, key=lambda: "k", wait=10.0)
    def slow() -> str:
        calls.append(1)
        if len(calls) == 1:
            inside.set()
            assert leave.wait(10)
            raise ConnectionError
        return "second"

    errors: list[BaseException] = []
    results: list[str] = []

    def first() -> None:
        try:
            slow()
        except ConnectionError as exc:
            errors.append(exc)

    owner = threading.Thread(target=first)
    owner.start()
    assert inside.wait(10)
    waiter = threading.Thread(target=lambda: results.append(slow()))
    waiter.start()
    time.sleep(0.05)
    leave.set()
    owner.join(10)
    waiter.join(10)
    assert len(errors) == 1 and results == ["second"] and len(calls) == 2


def test_crashed_owners_lease_expires(store: Any) -> None:
    clock = FakeClock(0.0)
    calls = []

    @idempotent(store, key=lambda: "k", lease=5.0, clock=clock, name="job")
    def job() -> str:
        calls.append(1)
        return "ran"

    # A crashed owner: took the lease and never came back.
    fp = default_fingerprint((), {})
    assert store.begin("job:k", fp, new_token(), 5.0, 0.0).status == "acquired"
    with pytest.raises(IdempotencyInProgress):
        job()
    clock.advance(5.0)
    assert job() == "ran" and calls == [1]


def test_late_completion_is_refused_by_the_fencing_token(store: Any) -> None:
    clock = FakeClock(0.0)
    inside = {"A": threading.Event(), "B": threading.Event()}
    leave = {"A": threading.Event(), "B": threading.Event()}
    runs: list[str] = []

    @idempotent(store, key=lambda who: "k", fingerprint=lambda who: "same", lease=5.0, clock=clock)
    def job(who: str) -> str:
        runs.append(who)
        inside[who].set()
        assert leave[who].wait(10)
        return who

    results: dict[str, str] = {}
    a = threading.Thread(target=lambda: results.update(A=job("A")))
    a.start()
    assert inside["A"].wait(10)
    clock.advance(6.0)  # A stalls past its lease (renewal runs every lease/3 of real time: not yet)
    b = threading.Thread(target=lambda: results.update(B=job("B")))
    b.start()
    assert inside["B"].wait(10)  # B found the lease expired and runs
    leave["A"].set()
    a.join(10)  # A completes late, while B holds the lease: refused
    with pytest.raises(IdempotencyInProgress):
        job("C")  # still B's lease, not A's result
    leave["B"].set()
    b.join(10)
    assert results == {"A": "A", "B": "B"}
    assert job("C") == "B"  # the stored result is B's, never A's
    assert runs == ["A", "B"]


def test_store_refuses_other_tokens(store: Any) -> None:
    assert store.begin("k", "f", "tA", 5.0, 0.0).status == "acquired"
    assert store.begin("k", "f", "tB", 5.0, 5.0).status == "acquired"  # A's lease ran out
    assert not store.complete("k", "tA", b"vA", 100.0, 6.0)
    assert not store.renew("k", "tA", 5.0, 6.0)
    assert not store.release("k", "tA", 6.0)
    record = store.get("k", 6.0)
    assert record is not None and not record.done and record.token == "tB"
    assert store.complete("k", "tB", b"vB", 100.0, 6.0)
    claim = store.begin("k", "f", "tC", 5.0, 7.0)
    assert (claim.status, claim.result) == ("replay", b"vB")


def test_live_owner_renews_its_lease() -> None:
    store = MemoryIdempotencyStore()
    inside = threading.Event()
    leave = threading.Event()

    @idempotent(store, key=lambda: "k", lease=0.6)
    def slow() -> str:
        inside.set()
        assert leave.wait(10)
        return "done"

    owner = threading.Thread(target=slow)
    owner.start()
    assert inside.wait(10)
    try:
        for _ in range(15):  # 1.5 s: over two leases; still in progress every time
            time.sleep(0.1)
            with pytest.raises(IdempotencyInProgress):
                slow()
    finally:
        leave.set()
        owner.join(10)
    assert slow() == "done"


def test_live_async_owner_renews_its_lease() -> None:
    store = MemoryIdempotencyStore()

    @idempotent(store, key=lambda leave: "k", fingerprint=lambda leave: "", lease=0.6)
    async def slow(leave: asyncio.Event) -> str:
        await leave.wait()
        return "done"

    async def main() -> None:
        leave = asyncio.Event()
        task = asyncio.create_task(slow(leave))
        await asyncio.sleep(0.01)
        for _ in range(15):  # 1.5 s: over two leases
            await asyncio.sleep(0.1)
            with pytest.raises(IdempotencyInProgress):
                await slow(leave)
        leave.set()
        assert await task == "done"
        assert await slow(leave) == "done"

    asyncio.run(main())


def test_sixteen_threads_run_once(store: Any) -> None:
    calls = []
    barrier = threading.Barrier(16)

    @idempotent(store, key=lambda: "k", wait=30.0)
    def work() -> dict[str, int]:
        calls.append(1)
        time.sleep(0.05)
        return {"n": 42}

    results: list[Any] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait(10)
        value = work()
        with lock:
            results.append(value)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == [1] and results == [{"n": 42}] * 16


def test_thousand_tasks_run_once(store: Any) -> None:
    calls = []

    @idempotent(store, key=lambda: "k", wait=60.0)
    async def work() -> int:
        calls.append(1)
        await asyncio.sleep(0.05)
        return 42

    async def main() -> list[int]:
        gate = asyncio.Event()

        async def one() -> int:
            await gate.wait()
            return await work()

        tasks = [asyncio.create_task(one()) for _ in range(1000)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == [42] * 1000 and calls == [1]


# -- events, bounds, validation -------------------------------------------------------------


def test_events_replay_and_conflicts() -> None:
    sink = Sink()
    bus = EventBus([sink])

    @idempotent(MemoryIdempotencyStore(), key=lambda n: "k", events=bus, name="pay")
    def pay(n: int) -> int:
        return n

    pay(1)
    pay(1)
    with pytest.raises(IdempotencyKeyReused):
        pay(2)
    kinds = [(type(e), e.policy, getattr(e, "reason", None)) for e in sink.events]
    assert kinds == [(IdempotentReplay, "pay", None), (IdempotencyConflict, "pay", "reused")]


def test_no_event_is_built_without_a_listening_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    import resilience.idempotency.decorator as module

    for name in ("IdempotentReplay", "IdempotencyConflict"):

        def refuse(*args: Any) -> None:
            raise AssertionError("an event was built with no sink listening")

        refuse.level = getattr(module, name).level  # type: ignore[attr-defined]  # bus.wants reads it
        monkeypatch.setattr(module, name, refuse)

    @idempotent(MemoryIdempotencyStore(), key=lambda n: "k", events=EventBus())
    def pay(n: int) -> int:
        return n

    pay(1)
    pay(1)
    with pytest.raises(IdempotencyKeyReused):
        pay(2)


def test_memory_store_evicts_completed_never_running() -> None:
    store = MemoryIdempotencyStore(max_keys=2)
    assert store.begin("a", "f", "t1", 10.0, 0.0).status == "acquired"
    assert store.complete("a", "t1", b"v1", 100.0, 0.0)
    assert store.begin("b", "f", "t2", 10.0, 0.0).status == "acquired"
    assert store.begin("c", "f", "t3", 10.0, 0.0).status == "acquired"  # evicts done "a"
    assert store.get("a", 0.0) is None
    assert store.get("b", 0.0) is not None and store.get("c", 0.0) is not None
    with pytest.raises(StoreFull) as info:
        store.begin("d", "f", "t4", 10.0, 1.0)  # b and c are running: never dropped
    assert info.value.retry_after == pytest.approx(9.0)
    assert store.begin("d", "f", "t4", 10.0, 10.0).status == "acquired"  # dead leases go
    assert len(store) <= 2


def test_invalid_keys_and_options() -> None:
    @idempotent(MemoryIdempotencyStore(), key=lambda k: k)
    def f(k: Any) -> int:
        return 1

    with pytest.raises(InvalidKey):
        f(5)
    with pytest.raises(InvalidKey):
        f("x" * 2000)
    for kwargs, field in [
        ({"ttl": 0}, "ttl"),
        ({"lease": -1}, "lease"),
        ({"wait": float("nan")}, "wait"),
        ({"store_errors": (int,)}, "store_errors"),
        ({"key": "order"}, "key"),
        ({"fingerprint": 3}, "fingerprint"),
    ]:
        with pytest.raises(ValueError, match=field):
            idempotent(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="store"):
        idempotent(store=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_keys"):
        MemoryIdempotencyStore(0)


def test_default_fingerprint_is_stable_and_refuses_unknown_types() -> None:
    assert default_fingerprint((1, "a"), {"x": 1, "y": 2}) == default_fingerprint(
        (1, "a"), {"y": 2, "x": 1}
    )
    assert default_fingerprint((b"ab",), {}) != default_fingerprint(("ab",), {})
    with pytest.raises(TypeError, match="fingerprint="):
        default_fingerprint((object(),), {})


def test_policy_call_with_bound_methods_caches_by_function() -> None:
    calls = []

    class Handler:
        def handle(self, n: int) -> int:
            calls.append(n)
            return n

    policy = idempotent(MemoryIdempotencyStore(), key=lambda n: str(n), events=EventBus())
    assert [policy.call(Handler().handle, 1) for _ in range(50)] == [1] * 50
    assert calls == [1] and len(policy._bound) == 1
