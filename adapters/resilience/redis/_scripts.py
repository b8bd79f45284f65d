"""The Lua scripts, loaded once from the package's ``lua/`` folder.

Each script is the shared prelude (``lua/prelude.lua``: float formatting,
``wait_until``, ``window_index``, the clock) followed by one algorithm's
transition, so each decision is a single self-contained ``EVALSHA``.  The
SHA1 is computed here rather than with ``SCRIPT LOAD``: the store then needs
no round trip before the first decision, and falls back to ``EVAL`` (which
caches the script again) when the server answers ``NOSCRIPT``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

__all__ = ["Call", "Script", "bulk", "script"]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script's source and the SHA1 Redis knows it by."""

    name: str
    source: bytes
    sha: str


def bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


class Call:
    """A script with one key and a fixed tail of arguments, packed once.

    Each call sends ``EVALSHA <sha> 1 <key> <now> <cost> <fixed...>``; the
    parts that never change are encoded to RESP here, so a decision only
    encodes its key, clock reading and cost (redis-py would re-encode all of
    it on every call, which costs as much as a ``PING``).
    """

    __slots__ = ("_eval", "_evalsha", "fixed", "script")

    def __init__(self, script: Script, fixed: tuple[bytes, ...]) -> None:
        self.script = script
        self.fixed = fixed
        count = b"*%d\r\n" % (6 + len(fixed))
        tail = b"".join(bulk(arg) for arg in fixed)
        # One %-format per call fills in key, clock and cost (so escape any % around them).
        middle = b"$%d\r\n%s\r\n" * 3
        sha_head = count + bulk(b"EVALSHA") + bulk(script.sha.encode()) + bulk(b"1")
        eval_head = count + bulk(b"EVAL") + bulk(script.source) + bulk(b"1")
        self._evalsha = _escape(sha_head) + middle + _escape(tail)
        self._eval = _escape(eval_head) + middle + _escape(tail)

    def evalsha(self, key: bytes, now: bytes, cost: bytes) -> bytes:
        """The packed ``EVALSHA`` command for one decision."""
        return self._evalsha % (len(key), key, len(now), now, len(cost), cost)

    def eval(self, key: bytes, now: bytes, cost: bytes) -> bytes:
        """The packed ``EVAL`` command (after ``NOSCRIPT``)."""
        return self._eval % (len(key), key, len(now), now, len(cost), cost)


def _escape(packed: bytes) -> bytes:
    return packed.replace(b"%", b"%%")


def _read(name: str) -> bytes:
    return files(__package__).joinpath("lua", f"{name}.lua").read_bytes()


@cache
def script(name: str) -> Script:
    """The script ``name`` (``lua/<name>.lua`` after the prelude)."""
    source = _read("prelude") + b"\n" + _read(name)
    return Script(name, source, hashlib.sha1(source).hexdigest())
