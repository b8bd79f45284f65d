"""A throwaway ``redis-server`` for integration tests and benchmarks.

``RedisServer`` runs the real binary on a free 127.0.0.1 port in a temporary
directory, with persistence off, and can kill, restart (same port), freeze
(``SIGSTOP``) and thaw it, which is how the store's outage behaviour is
tested.  Shipped so that users can test their own limits against a real
server the same way; no mocks, no fakes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

__all__ = ["RedisServer", "free_port", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """Path of ``redis-server`` (``$REDIS_SERVER`` if set, else on ``PATH``), or ``None``."""
    chosen = os.environ.get("REDIS_SERVER")
    return shutil.which(chosen) if chosen else shutil.which("redis-server")


MAX_PORT = 55535
"""Cluster mode also binds port + 10000, so every server here stays at or below this."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and <= MAX_PORT)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port <= MAX_PORT:
            return port
    raise RuntimeError(f"no free port at or below {MAX_PORT} on 127.0.0.1")


class _ExitedAtStartup(RuntimeError):
    pass


class RedisServer:
    """One ``redis-server`` process; ``start()`` / ``stop()`` or use as a context manager."""

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server not found; install it or set REDIS_SERVER")
        self.binary = found
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.dir = tempfile.mkdtemp(prefix="resilience-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING``.

        A port picked automatically can be taken by someone else before the
        server binds it; then another free port is tried (three times at most).
        """
        for attempt in range(3):
            try:
                return self._start()
            except _ExitedAtStartup:
                if self._fixed_port or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> RedisServer:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            *self.extra_args,
        ]  # fmt: skip
        log = open(os.path.join(self.dir, "redis.log"), "ab")  # noqa: SIM115 - owned by the child
        try:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while not self._answers():
            if self.process.poll() is not None:
                self.process = None
                raise _ExitedAtStartup(f"redis-server exited at startup; see {self.dir}/redis.log")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer within {self.startup_timeout}s")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """``SIGKILL``: the crash case (no shutdown, connections reset)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen process must be able to die
            process.kill()
            process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Stop gracefully (``SIGTERM``), killing after a few seconds."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.process = None

    def restart(self) -> RedisServer:
        """Kill and start again on the same port, with empty data (no persistence)."""
        self.kill()
        return self.start()

    def freeze(self) -> None:
        """``SIGSTOP``: the process stays up but answers nothing (a hung server)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """``SIGCONT`` after :meth:`freeze`."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.process is not None})"
