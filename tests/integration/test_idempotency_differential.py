"""One semantics in every store: memory, SQLite and Redis answer every step identically.

A hypothesis state machine drives the three stores in lockstep on one fake
timeline (``clock="client"``) and checks each answer against the others and
against the model; it also drives ``@idempotent`` over each store with the
same calls and compares what callers see.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from resilience import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
    idempotent,
)
from resilience.events import EventBus
from resilience.redis import RedisIdempotencyStore
from resilience.testing import FakeClock
from tests.property.idempotency_machine import IdempotencyStoreMachine

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings("ignore:RedisStore.timeout=.*cannot bound:RuntimeWarning"),
]


class Tee:
    """Runs each operation on every store and insists they all answer the same."""

    def __init__(self, stores: dict[str, Any]) -> None:
        self.stores = stores

    def _all(self, op: str, *args: Any) -> Any:
        answers = {name: getattr(store, op)(*args) for name, store in self.stores.items()}
        first = next(iter(answers.values()))
        assert all(a == first for a in answers.values()), (op, args, answers)
        return first

    def begin(self, *args: Any) -> Any:
        return self._all("begin", *args)

    def renew(self, *args: Any) -> Any:
        return self._all("renew", *args)

    def complete(self, *args: Any) -> Any:
        return self._all("complete", *args)

    def release(self, *args: Any) -> Any:
        return self._all("release", *args)

    def get(self, *args: Any) -> Any:
        return self._all("get", *args)

    def close(self) -> None:
        for store in self.stores.values():
            close = getattr(store, "close", None)
            if close is not None:
                close()


def three_stores(url: str, path: Path) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()
    if path.exists():
        path.unlink()
    return {
        "memory": MemoryIdempotencyStore(),
        "sqlite": SQLiteIdempotencyStore(path, clock="client"),
        "redis": RedisIdempotencyStore(redis.Redis.from_url(url), clock="client", timeout=5.0),
    }


class DifferentialMachine(IdempotencyStoreMachine):
    url = ""
    path = Path(tempfile.gettempdir()) / f"idem-differential-{os.getpid()}.db"

    def make_store(self) -> Any:
        return Tee(three_stores(self.url, self.path))


def test_stores_agree_step_by_step(redis_url: str) -> None:
    DifferentialMachine.url = redis_url
    run_state_machine_as_test(
        DifferentialMachine,
        settings=settings(max_examples=80, stateful_step_count=40, deadline=None),
    )


CALLS = st.lists(
    st.tuples(
        st.sampled_from(["k1", "k2"]),  # key
        st.sampled_from([1, 2]),  # argument (fingerprint)
        st.sampled_from(["ok", "fail", "declined"]),  # what the function does this time
        st.sampled_from([0.0, 1.0, 40.0, 90_000.0]),  # time that passes before the call
    ),
    max_size=12,
)


class Declined(Exception):
    pass


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # each example flushes the stores itself
@given(calls=CALLS)
def test_decorator_is_the_same_over_every_store(redis_url: str, calls: list[Any]) -> None:
    path = Path(tempfile.gettempdir()) / f"idem-differential-dec-{os.getpid()}.db"
    stores = three_stores(redis_url, path)
    seen: dict[str, list[Any]] = {}
    try:
        for name, store in stores.items():
            clock = FakeClock(1000.0)
            runs: list[Any] = []

            @idempotent(
                store,
                key=lambda k, arg, behaviour, **_: k,
                fingerprint=lambda k, arg, behaviour, **_: str(arg),
                store_errors=(Declined,),
                clock=clock,
                name="f",
                events=EventBus(),
            )
            def f(k: str, arg: int, behaviour: str, runs: list[Any] = runs) -> dict[str, Any]:
                runs.append((k, arg, behaviour))
                if behaviour == "fail":
                    raise ConnectionError("transient")
                if behaviour == "declined":
                    raise Declined("no", arg)
                return {"k": k, "arg": arg, "n": len(runs)}

            out: list[Any] = []
            for k, arg, behaviour, dt in calls:
                clock.advance(dt)
                try:
                    out.append(("ok", f(k, arg, behaviour)))
                except (ConnectionError, Declined, IdempotencyKeyReused) as exc:
                    out.append((type(exc).__name__, exc.args))
                except IdempotencyInProgress as exc:  # pragma: no cover - no concurrency here
                    out.append(("in_progress", exc.retry_after))
            seen[name] = [out, runs]
    finally:
        for store in stores.values():
            if hasattr(store, "close"):
                store.close()
    assert seen["memory"] == seen["sqlite"] == seen["redis"]
