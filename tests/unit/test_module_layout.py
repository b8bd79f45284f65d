"""Where modules live and what their names promise (rate-limit stores, renamed modules)."""

from __future__ import annotations

import ast
import importlib
import pathlib
import sys
import warnings

import pytest

import resilience
from resilience.ratelimit.algorithms import TokenBucket
from resilience.ratelimit.limiter import RateLimiter
from resilience.ratelimit.memory_store import MemoryStore, MemoryTable
from resilience.ratelimit.store import LocalTable, RateLimitTable
from resilience.testing import FakeClock

ROOT = pathlib.Path(resilience.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["memory_store.py", "store.py"])
def test_the_stores_know_nothing_of_events_or_the_limiter(module: str) -> None:
    imported = _imports(ROOT / "ratelimit" / module)
    assert "resilience.events" not in imported
    assert not any(name.startswith("resilience.ratelimit.limiter") for name in imported)


def test_only_the_hot_path_module_fuses_a_decision() -> None:
    """The lock/dict/step sequence is inlined once in the limiter, not in the store."""
    store_source = (ROOT / "ratelimit" / "memory_store.py").read_text(encoding="utf-8")
    assert "def try_acquire" not in store_source and "bind_try_acquire" not in store_source
    limiter_source = (ROOT / "ratelimit" / "limiter.py").read_text(encoding="utf-8")
    assert "vars(self)" not in limiter_source


def test_memory_table_exposes_its_parts() -> None:
    clock = FakeClock()
    table = MemoryStore().table(TokenBucket(2, 1.0), clock.monotonic, "t")
    assert isinstance(table, LocalTable)
    assert isinstance(table, RateLimitTable)
    with table.lock:
        first = table.insert("k", 1, clock.monotonic())
    assert first.allowed and first.remaining == 1
    state, decision = table.step(table.data["k"], clock.monotonic(), 1)
    assert decision.allowed and decision.remaining == 0 and state is not None


class _NetworkLike:
    """A table that is not local: the limiter must call ``decide``."""

    def __init__(self, inner: MemoryTable) -> None:
        self.inner = inner
        self.calls = 0

    def decide(self, key: str, cost: float, now: float):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.decide(key, cost, now)

    async def adecide(self, key: str, cost: float, now: float):  # type: ignore[no-untyped-def]
        return self.decide(key, cost, now)

    def refund(self, key: str, cost: float, now: float) -> None:
        self.inner.refund(key, cost, now)


class _NetworkStore:
    def __init__(self) -> None:
        self.memory = MemoryStore()
        self.tables: list[_NetworkLike] = []

    def table(self, algorithm, now, name):  # type: ignore[no-untyped-def]
        table = _NetworkLike(self.memory.table(algorithm, now, name))
        self.tables.append(table)
        return table


def test_local_and_networked_tables_decide_alike() -> None:
    clock = FakeClock()
    local = RateLimiter(TokenBucket(3, 1.0), clock=clock)
    remote_store = _NetworkStore()
    remote = RateLimiter(TokenBucket(3, 1.0), store=remote_store, clock=clock)
    assert local.in_process and not remote.in_process
    for step in range(12):
        key = f"k{step % 2}"
        assert local.try_acquire(key, 1) == remote.try_acquire(key, 1)
        clock.advance(0.1)
    assert remote_store.tables[0].calls == 12


def test_memory_store_is_still_importable_from_the_package_root() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from resilience import MemoryStore as Root
    assert Root is MemoryStore


def test_the_old_stores_package_warns_and_reexports() -> None:
    for name in [m for m in sys.modules if m.startswith("resilience.stores")]:
        del sys.modules[name]
    with pytest.warns(DeprecationWarning, match="resilience.stores is deprecated"):
        old = importlib.import_module("resilience.stores")
    assert old.MemoryStore is MemoryStore
    from resilience.stores.base import RateLimitStore as OldProtocol  # type: ignore[import-not-found]
    from resilience.stores.memory import MemoryStore as OldMemory  # type: ignore[import-not-found]

    assert OldMemory is MemoryStore
    assert OldProtocol is importlib.import_module("resilience.ratelimit.store").RateLimitStore


def test_the_old_web_keys_module_warns_and_reexports() -> None:
    sys.modules.pop("resilience.web.keys", None)
    with pytest.warns(DeprecationWarning, match="resilience.web.keys is deprecated"):
        old = importlib.import_module("resilience.web.keys")
    new = importlib.import_module("resilience.web.request_keys")
    for name in new.__all__:
        assert getattr(old, name) is getattr(new, name)


@pytest.mark.parametrize(
    ("module", "holds"),
    [
        ("resilience.retrying.retry", "Retry"),
        ("resilience.web.request_keys", "ClientIP"),
        ("resilience.replay.key_spec", "KeySpec"),
        ("resilience.redis._runners", "SyncRunner"),
        ("resilience.ratelimit.memory_store", "MemoryStore"),
        ("resilience.ratelimit.store", "RateLimitStore"),
    ],
)
def test_modules_are_named_after_what_they_hold(module: str, holds: str) -> None:
    if module.startswith("resilience.redis"):
        pytest.importorskip("redis")
    assert hasattr(importlib.import_module(module), holds)
