"""What watching costs: the hot paths with and without the metrics sinks attached.

Decisions are counted by each policy's ``Tally`` (always on: one integer
increment per decision) and read by the exporters at scrape time, so
attaching ``PrometheusSink`` or ``OtelSink`` should leave the allowed path
unchanged; what they add is on the rare paths (rejections build an event only
for a sink that wants debug level, such as ``OtelSink(min_level="debug")``
for span events) and in
``timed()`` (two clock reads and a histogram observation per call).  Rows,
interleaved with a bare call in one run:

- rate limiter allowed (TokenBucket, memory): no sink / PrometheusSink / OtelSink;
- rate limiter rejected (incl. the Decision, no raise): no sink / each sink;
- breaker closed, bulkhead slot free (sync): no sink / PrometheusSink;
- ``timed()`` around a bare call: Prometheus histogram, OTel histogram;
- one scrape of the Prometheus collector with three tracked policies.

Run standalone with ``python -m benchmarks.bench_observability``.
"""

from __future__ import annotations

from typing import Any

from benchmarks._harness import Timing, bare, interleaved_table, sync_case
from resilience import Bulkhead, CircuitBreaker, EventBus, RateLimiter, TokenBucket

Row = dict[str, Any]
TABLE = "Hot paths with and without metrics sinks (sync, memory)"


def limiter(bus: EventBus, *, allowed: bool) -> RateLimiter:
    # limit 1000 refilled every nanosecond: always allowed; limit 1 per hour: rejected after one.
    algorithm = TokenBucket(1000, 1e-9) if allowed else TokenBucket(1, 3600.0)
    made = RateLimiter(algorithm, name="bench", events=bus)
    made.try_acquire("k")
    return made


def run() -> list[Row]:
    from prometheus_client import CollectorRegistry, generate_latest

    from resilience.prometheus import PrometheusSink

    registry = CollectorRegistry()
    prom = PrometheusSink(registry)
    prom_bus = EventBus([prom])
    quiet = EventBus()
    cases = {
        "bare call": sync_case(bare, "k"),
        "limiter allowed, no sink": sync_case(limiter(quiet, allowed=True).try_acquire, "k"),
        "limiter allowed, PrometheusSink": sync_case(
            limiter(prom_bus, allowed=True).try_acquire, "k"
        ),
        "limiter rejected, no sink": sync_case(limiter(quiet, allowed=False).try_acquire, "k"),
        "limiter rejected, PrometheusSink (info)": sync_case(
            limiter(prom_bus, allowed=False).try_acquire, "k"
        ),
        "breaker closed, no sink": sync_case(CircuitBreaker("b", events=quiet).call, bare),
        "breaker closed, PrometheusSink": sync_case(
            CircuitBreaker("b", events=prom_bus).call, bare
        ),
        "bulkhead free, no sink": sync_case(Bulkhead("h", events=quiet).call, bare),
        "bulkhead free, PrometheusSink": sync_case(Bulkhead("h", events=prom_bus).call, bare),
        "timed() around a bare call, Prometheus histogram": sync_case(prom.timed("t").call, bare),
    }
    tracked = [limiter(prom_bus, allowed=True), CircuitBreaker("b2"), Bulkhead("h2")]
    prom.track(*tracked)
    cases["one Prometheus scrape (3 tracked policies)"] = sync_case(
        generate_latest, registry, repeat=3
    )
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from resilience.otel import OtelSink
    except ImportError:  # the otel extra or the SDK is not installed
        pass
    else:
        otel = OtelSink(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        otel_bus = EventBus([otel])
        cases["limiter allowed, OtelSink"] = sync_case(
            limiter(otel_bus, allowed=True).try_acquire, "k"
        )
        cases["limiter rejected, OtelSink (info: no event built)"] = sync_case(
            limiter(otel_bus, allowed=False).try_acquire, "k"
        )
        debug = OtelSink(MeterProvider(metric_readers=[InMemoryMetricReader()]), min_level="debug")
        cases["limiter rejected, OtelSink(min_level=debug), no current span"] = sync_case(
            limiter(EventBus([debug]), allowed=False).try_acquire, "k"
        )
        cases["timed() around a bare call, OTel histogram"] = sync_case(otel.timed("t").call, bare)
    results: dict[str, Timing] = {}
    return interleaved_table(TABLE, cases, "bare call", results, passes=5)


def main() -> None:
    from benchmarks.__main__ import machine, markdown, tables

    print(f"Machine: {machine()}\n")
    for title, group in tables("bench_observability", run()):
        print(f"### {title}\n\n{markdown(group)}\n", flush=True)


if __name__ == "__main__":
    main()
