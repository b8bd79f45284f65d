"""Web middleware over real HTTP: wrk against uvicorn and aiohttp, ratios to the bare app.

The in-process figures (``bench_asgi``) leave out everything a server does per
response (parsing, header encoding, socket writes); a middleware that adds
headers or objects can cost more end to end than it does in process.  So
here each app runs in its own server process on a free 127.0.0.1 port (one
uvicorn worker with uvloop and httptools; aiohttp on uvloop) and ``wrk``
(Debian's package) loads it over keep-alive connections.

Variants per server: the bare app, a trivial pass-through middleware (the
floor any middleware pays: one more call level), a trivial middleware adding
two constant header lines (the floor with headers on: what the server pays
to check and write two more fields), a trivial middleware taking one limiter
decision and nothing else (what the decision alone costs in a running server:
several times its cost in a ``timeit`` loop), ours with IETF headers
(every request admitted), ours with ``headers=None``, and ours refusing every
request (the 429 path).  Every variant is measured in every round, in turns
(``ROUNDS`` rounds of ``SECONDS`` seconds each, after a warm-up), so a
disturbance from the other processes on the machine spreads over all of
them; each round's ratio uses that round's bare figure, and the table gives
the median ratio and the median throughput.  On a shared machine throughput
swings with whatever else runs, so each run also reads the server process's
CPU time (``/proc/<pid>/stat``) and divides it by the requests wrk counted:
CPU time per request is what the middleware adds, and its ratio to the
bare app's is the steadier figure (a bar passes on the throughput ratio,
or is marked "PASS (CPU)" when only the CPU ratio clears it).

Bars (issue 9): ours with IETF headers >= 0.85x bare throughput on uvicorn
and >= 0.80x on aiohttp.

Run: ``python -m benchmarks http`` (or ``python -m benchmarks.bench_http``).
``BENCH_HTTP_BASELINE=DIR`` (a source tree of an earlier commit, e.g. from
``git archive REV | tar -x -C DIR``) adds that tree's middleware to the same
rounds, so a change is measured before and after under the same load;
``BENCH_HTTP_ONLY=uvicorn`` (or ``aiohttp``) measures one server.
Needs ``wrk`` on PATH, uvicorn, uvloop, httptools and aiohttp.  Every
server and wrk run is bounded in time and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

Row = dict[str, Any]

ROUNDS = int(os.environ.get("BENCH_HTTP_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_HTTP_SECONDS", "3"))
CONNECTIONS = 32
BIG = 10**9
BARS = {"uvicorn": 0.85, "aiohttp": 0.80}

# (server, variant): what each subprocess serves.  The order is the order of the table.
VARIANTS: list[tuple[str, str]] = [
    ("uvicorn", "bare"),
    ("uvicorn", "trivial"),
    ("uvicorn", "trivial-headers"),
    ("uvicorn", "decision-only"),
    ("uvicorn", "ours-ietf"),
    ("uvicorn", "ours-none"),
    ("uvicorn", "ours-refusing"),
    ("aiohttp", "bare"),
    ("aiohttp", "trivial"),
    ("aiohttp", "trivial-headers"),
    ("aiohttp", "decision-only"),
    ("aiohttp", "ours-ietf"),
    ("aiohttp", "ours-none"),
    ("aiohttp", "ours-refusing"),
]

BASELINE = os.environ.get("BENCH_HTTP_BASELINE", "")
"""A source tree of an earlier version (``git archive <rev> | tar -x -C DIR``): its
middleware is then measured in the same interleaved rounds, as "baseline" rows."""
BASELINE_PREFIX = "baseline-"
if BASELINE:
    for _server in ("uvicorn", "aiohttp"):
        _at = VARIANTS.index((_server, "ours-none")) + 1
        VARIANTS[_at:_at] = [
            (_server, BASELINE_PREFIX + "ours-ietf"),
            (_server, BASELINE_PREFIX + "ours-none"),
        ]

LABELS = {
    "bare": "bare app",
    "trivial": "trivial pass-through middleware",
    "trivial-headers": "trivial middleware adding two constant headers",
    "decision-only": "trivial middleware taking one limiter decision (no key, no headers)",
    "ours-ietf": "rate limit, all admitted, headers='ietf'",
    "ours-none": "rate limit, all admitted, headers=None",
    "ours-refusing": "rate limit, all refused (429), headers='ietf'",
}


# -- the apps (run inside the server subprocess) --------------------------------------


def _limiter(admit: bool) -> Any:
    from resilience.ratelimit.algorithms import GCRA
    from resilience.ratelimit.limiter import RateLimiter

    if admit:
        return RateLimiter(GCRA(BIG, 3600.0), name="bench")
    return RateLimiter(GCRA(1, 3600.0), name="bench")


async def _raw_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


class _PassThrough:
    """The cheapest ASGI middleware there is: one more call level."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


_TWO_HEADERS = [
    (b"ratelimit-policy", b'"bench";q=1000000000;w=3600'),
    (b"ratelimit", b'"bench";r=999999999;t=1'),
]


class _AddsHeaders:
    """The floor for "with headers on": a pass-through adding two constant header lines
    (what the server then pays to check and encode them, with nothing computed)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        def send_with_headers(message: Any) -> Any:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_TWO_HEADERS]
            return send(message)

        await self.app(scope, receive, send_with_headers)


class _DecidesOnly:
    """A pass-through that takes one in-memory limiter decision per request and nothing
    else: what the decision alone costs inside a running server."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.decide = _limiter(True).try_acquire

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.decide("127.0.0.1")
        await self.app(scope, receive, send)


def asgi_app(variant: str) -> Any:
    from resilience.asgi import RateLimitMiddleware

    if variant == "bare":
        return _raw_app
    if variant == "trivial":
        return _PassThrough(_raw_app)
    if variant == "trivial-headers":
        return _AddsHeaders(_raw_app)
    if variant == "decision-only":
        return _DecidesOnly(_raw_app)
    if variant == "ours-ietf":
        return RateLimitMiddleware(_raw_app, _limiter(True))
    if variant == "ours-none":
        return RateLimitMiddleware(_raw_app, _limiter(True), headers=None)
    if variant == "ours-refusing":
        return RateLimitMiddleware(_raw_app, _limiter(False))
    raise ValueError(variant)


def aiohttp_app(variant: str) -> Any:
    from aiohttp import web

    from resilience.aiohttp import rate_limit_middleware

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    @web.middleware
    async def trivial(request: web.Request, handler: Any) -> web.StreamResponse:
        return await handler(request)  # type: ignore[no-any-return]

    two_headers = [(name.decode().title(), value.decode()) for name, value in _TWO_HEADERS]

    @web.middleware
    async def adds_headers(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        response.headers.extend(two_headers)
        return response  # type: ignore[no-any-return]

    decide = _limiter(True).try_acquire

    @web.middleware
    async def decides_only(request: web.Request, handler: Any) -> web.StreamResponse:
        decide("127.0.0.1")
        return await handler(request)  # type: ignore[no-any-return]

    middlewares: list[Any] = []
    if variant == "decision-only":
        middlewares = [decides_only]
    elif variant == "trivial":
        middlewares = [trivial]
    elif variant == "trivial-headers":
        middlewares = [adds_headers]
    elif variant == "ours-ietf":
        middlewares = [rate_limit_middleware(_limiter(True))]
    elif variant == "ours-none":
        middlewares = [rate_limit_middleware(_limiter(True), headers=None)]
    elif variant == "ours-refusing":
        middlewares = [rate_limit_middleware(_limiter(False))]
    elif variant != "bare":
        raise ValueError(variant)
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/", ok)
    return app


def serve(server: str, variant: str, port: int) -> None:
    """Run one server in this process until SIGTERM."""
    import uvloop

    if server == "uvicorn":
        import uvicorn

        uvicorn.run(
            asgi_app(variant),
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
        return
    from aiohttp import web

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        aiohttp_app(variant),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        handle_signals=True,
    )


# -- the driver -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not listen within {timeout} s")


@contextmanager
def servers(
    variants: list[tuple[str, str]],
) -> Iterator[dict[tuple[str, str], tuple[int, int]]]:
    """Start one subprocess per variant; always stop every one of them."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[tuple[str, str], tuple[int, int]] = {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        for server, variant in variants:
            port = _free_port()
            cwd, env, served = root, None, variant
            if variant.startswith(BASELINE_PREFIX):  # served by the baseline tree's own code
                cwd, served = BASELINE, variant.removeprefix(BASELINE_PREFIX)
                env = {
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join([BASELINE, os.path.join(BASELINE, "adapters")]),
                }
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_http",
                    "--serve",
                    server,
                    served,
                    "--port",
                    str(port),
                ],
                cwd=cwd,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            procs.append(proc)
            _wait_listening(port, proc)
            ports[(server, variant)] = (port, proc.pid)
        yield ports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_TOTAL = re.compile(r"(\d+) requests in")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def wrk(port: int, seconds: int, pid: int | None = None) -> tuple[float, int, int, float]:
    """(requests/s, requests, non-2xx responses, server CPU us per request) of one wrk run."""
    cpu_before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = _RPS.search(out)
    total = _TOTAL.search(out)
    if rps is None or total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    cpu = cpu_seconds(pid) - cpu_before if pid is not None else 0.0
    non2xx = _NON2XX.search(out)
    requests = int(total.group(1))
    return (
        float(rps.group(1)),
        requests,
        int(non2xx.group(1)) if non2xx else 0,
        cpu * 1e6 / requests if requests else 0.0,
    )


def _load() -> str:
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def run() -> list[Row]:
    if shutil.which("wrk") is None:
        raise ModuleNotFoundError("wrk is not installed (apt-get install wrk)")
    import aiohttp  # noqa: F401  (skip cleanly when an extra is missing)
    import httptools  # noqa: F401
    import uvicorn  # noqa: F401
    import uvloop  # noqa: F401

    only = os.environ.get("BENCH_HTTP_ONLY", "")
    variants = [v for v in VARIANTS if not only or v[0] == only]
    rps: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    ratios: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    cpu: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    refused: dict[tuple[str, str], float] = {}
    load_before = _load()
    with servers(variants) as ports:
        for variant in variants:  # warm-up: imports, first connections, caches
            wrk(ports[variant][0], 1)
        for round_no in range(ROUNDS):
            order = variants if round_no % 2 == 0 else variants[::-1]
            measured: dict[tuple[str, str], float] = {}
            for variant in order:
                port, pid = ports[variant]
                per_second, total, non2xx, cpu_us = wrk(port, SECONDS, pid)
                measured[variant] = per_second
                rps[variant].append(per_second)
                cpu[variant].append(cpu_us)
                refused[variant] = non2xx / total if total else 0.0
            for server, name in variants:
                ratios[(server, name)].append(measured[(server, name)] / measured[(server, "bare")])
    load_after = _load()
    rows: list[Row] = []
    for server, name in variants:
        key = (server, name)
        cpu_us = statistics.median(cpu[key])
        cpu_bare = statistics.median(cpu[(server, "bare")])
        ratio = statistics.median(ratios[key])
        cpu_ratio = cpu_bare / cpu_us if cpu_us else float("nan")
        row: Row = {
            "table": (
                f"Real HTTP, wrk -t1 -c{CONNECTIONS}, {ROUNDS} interleaved rounds of {SECONDS} s: "
                f"{server}"
            ),
            "variant": (
                f"baseline tree: {LABELS[name.removeprefix(BASELINE_PREFIX)]}"
                if name.startswith(BASELINE_PREFIX)
                else LABELS[name]
            ),
            "req/s (median)": statistics.median(rps[key]),
            "throughput ratio (median)": ratio,
            "throughput ratio range": f"{min(ratios[key]):.2f}-{max(ratios[key]):.2f}",
            "server CPU us/request": cpu_us,
            "+CPU us/request": cpu_us - cpu_bare,
            "CPU ratio (bare/this)": cpu_ratio,
            "non-2xx": f"{refused[key]:.0%}",
        }
        if name == "ours-ietf":
            bar = BARS[server]
            row[f"bar >= {bar:.2f}x"] = (
                "PASS"
                if min(ratio, cpu_ratio) >= bar
                else ("PASS (CPU)" if cpu_ratio >= bar else "FAIL")
            )
        rows.append(row)
    rows.append(
        {
            "table": "Real HTTP: machine load (1, 5, 15 min averages)",
            "when": "before / after",
            "load": f"{load_before} / {load_after}",
            "cpus": os.cpu_count(),
        }
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_http")
    parser.add_argument("--serve", nargs=2, metavar=("SERVER", "VARIANT"))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], args.serve[1], args.port)
        return 0
    from benchmarks.__main__ import machine, markdown, tables

    print(f"Machine: {machine()}\n")
    for title, group in tables("bench_http", run()):
        print(f"### {title}\n\n{markdown(group)}\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
