"""Key extraction per request: what hashing a secret header costs.

``header("X-API-Key")`` hashes the value (BLAKE2b) so that API keys never reach
the store or the logs in clear; each extractor memoises finished keys, so a
client seen lately costs a dict lookup.  Rows, interleaved with a bare call in
one run, on a six-header request:

- ``client_ip()`` for reference;
- the readable key as it was before hashing (the old code path, reproduced:
  scan, decode, clean, prefix on every request);
- ``header(..., secret=False)`` and ``header(...)`` (hashed, unkeyed and
  keyed) for a client seen lately (memo hit);
- ``header(...)`` for a new value on every request (memo miss: the hash runs);
- ``key_from(fn, secret=True)``.

Run standalone with ``python -m benchmarks.bench_keys``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks._harness import Timing, bare, interleaved_table, sync_case, time_sync_over
from resilience.web.request_keys import DEFAULT_KEY, clean_header_value, client_ip, header, key_from

Row = dict[str, Any]
TABLE = "Key extraction per request (ASGI scope, 6 headers)"
SECRET = b"sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def request(api_key: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "client": ("203.0.113.7", 5000),
        "session": api_key.decode(),
        "headers": [
            (b"host", b"api.example.com"),
            (b"user-agent", b"curl/8.5.0"),
            (b"accept", b"*/*"),
            (b"x-api-key", api_key),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
        ],
    }


def readable_before(scope: Mapping[str, Any]) -> str:
    """``header("X-API-Key").from_scope`` as it was before hashing (no memo, value in clear)."""
    found = None
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            if found is not None:
                return DEFAULT_KEY.from_scope(scope)
            found = value
    if found is not None:
        text = found.decode("latin-1") if isinstance(found, bytes) else str(found)
        cleaned = clean_header_value(text, 256)
        if cleaned is not None:
            return "x-api-key=" + cleaned
    return DEFAULT_KEY.from_scope(scope)


def run() -> list[Row]:
    scope = request(SECRET)
    hashed = header("X-API-Key")
    cases = {
        "bare call": sync_case(bare, scope),
        "client_ip()": sync_case(client_ip().from_scope, scope),
        "before: header(), readable, no memo": sync_case(readable_before, scope),
        "header(secret=False)": sync_case(header("X-API-Key", secret=False).from_scope, scope),
        "header(): hashed, seen lately": sync_case(hashed.from_scope, scope),
        "header(hash_key=...): keyed, seen lately": sync_case(
            header("X-API-Key", hash_key=b"k" * 32).from_scope, scope
        ),
        "key_from(secret=True), seen lately": sync_case(
            key_from(lambda s: s["session"], secret=True).from_scope, scope
        ),
    }
    results: dict[str, Timing] = {}
    rows = interleaved_table(TABLE, cases, "bare call", results, passes=5)
    fresh = [request(b"sk_live_%024d" % i) for i in range(50_000)]
    miss = time_sync_over(header("X-API-Key").from_scope, fresh, repeat=3)
    base = results[f"{TABLE} / <bare>"]
    rows.append(
        {
            "table": TABLE,
            "name": "header(): hashed, a new value every request",
            "ns_per_call": round(miss.min_ns, 1),
            "ns_median": round(miss.median_ns, 1),
            "ratio_to_bare": round(miss.ratio(base), 2),
        }
    )
    return rows


def main() -> None:
    from benchmarks.__main__ import machine, markdown, tables

    print(f"Machine: {machine()}\n")
    for title, group in tables("bench_keys", run()):
        print(f"### {title}\n\n{markdown(group)}\n", flush=True)


if __name__ == "__main__":
    main()
