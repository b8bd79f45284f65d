"""A throwaway ``redis-server`` for integration tests and benchmarks.

``RedisServer`` runs the real binary on a free 127.0.0.1 port in a temporary
directory, with persistence off, and can kill, restart (same port), freeze
(``SIGSTOP``) and thaw it, which is how the store's outage behaviour is
tested.  ``RedisClusterNodes`` runs a real Redis Cluster of such servers
(masters with one replica each, made with ``redis-cli --cluster create``).
Shipped so that users can test their own limits against a real server the
same way; no mocks, no fakes.
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

__all__ = [
    "RedisClusterNodes",
    "RedisServer",
    "free_cluster_port",
    "free_port",
    "redis_cli_binary",
    "redis_server_binary",
]


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


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if _bindable(port + 10_000):
            return port
    raise RuntimeError("no free port with a free port + 10000 on 127.0.0.1")


def redis_cli_binary(server_binary: str | None = None) -> str | None:
    """Path of ``redis-cli``: ``$REDIS_CLI``, beside ``server_binary``, or on ``PATH``."""
    chosen = os.environ.get("REDIS_CLI")
    if chosen:
        return shutil.which(chosen)
    if server_binary:
        beside = os.path.join(os.path.dirname(server_binary), "redis-cli")
        if os.access(beside, os.X_OK):
            return beside
    return shutil.which("redis-cli")


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
        self._cluster = "--cluster-enabled" in extra_args
        self.port = port or self._free()
        self.extra_args = extra_args
        self.startup_timeout = startup_timeout
        self.dir = tempfile.mkdtemp(prefix="resilience-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def _free(self) -> int:
        return free_cluster_port() if self._cluster else free_port()

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
                self.port = self._free()
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


class RedisClusterNodes:
    """A real Redis Cluster on 127.0.0.1: ``masters`` masters with ``replicas`` replicas each.

    Each node is a :class:`RedisServer` in cluster mode on a port whose bus
    port (+10000) is free; ``start()`` joins them with ``redis-cli --cluster
    create`` and waits until every node reports ``cluster_state:ok``, knows
    every slot and every replica is in sync.  ``node_timeout`` (seconds) is
    the cluster's ``cluster-node-timeout``: how long a dead master goes
    unnoticed before its replica is promoted.  Every wait is bounded.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout: float = 1.0,
        startup_timeout: float = 60.0,
    ) -> None:
        if masters < 3:
            raise ValueError(f"masters: redis-cli --cluster create needs at least 3, got {masters}")
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server not found; install it or set REDIS_SERVER")
        cli = redis_cli_binary(found)
        if cli is None:
            raise FileNotFoundError("redis-cli not found; install it or set REDIS_CLI")
        self.binary = found
        self.cli = cli
        self.masters = masters
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.startup_timeout = startup_timeout
        self.servers: list[RedisServer] = []

    @property
    def ports(self) -> list[int]:
        """Ports of the nodes still running."""
        return [server.port for server in self.servers if server.process is not None]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every running node: pass them to a cluster client."""
        return [("127.0.0.1", port) for port in self.ports]

    def server(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(port)

    def start(self) -> RedisClusterNodes:
        """Start the nodes, create the cluster and wait until it is healthy."""
        deadline = time.monotonic() + self.startup_timeout
        args = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(max(1, round(self.node_timeout * 1000))),
        )  # fmt: skip
        try:
            for _ in range(self.masters * (1 + self.replicas)):
                self.servers.append(RedisServer(self.binary, extra_args=args).start())
            create = [
                self.cli,
                "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", str(self.replicas),
                "--cluster-yes",
            ]  # fmt: skip
            done = subprocess.run(
                create,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed ({done.returncode}): "
                    f"{done.stdout.decode(errors='replace')[-2000:]}"
                )
            self.wait_healthy(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.close()
            raise
        return self

    def _info(self, port: int, *command: str) -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(_resp(command))
            return _read_bulk(sock)

    def _command(self, port: int, *command: str) -> str:
        """A command whose reply is one line (``+OK``, ``-ERR ...``)."""
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(_resp(command))
            line = b""
            while not line.endswith(b"\r\n"):
                chunk = sock.recv(1)
                if not chunk:
                    raise OSError("connection closed")
                line += chunk
            return line[1:-2].decode()

    def cluster_nodes(self, port: int | None = None) -> list[list[str]]:
        """``CLUSTER NODES`` as seen by ``port`` (any running node by default), split."""
        port = self.ports[0] if port is None else port
        return [line.split() for line in self._info(port, "CLUSTER", "NODES").splitlines() if line]

    def slot_owner(self, slot: int, port: int | None = None) -> int:
        """Port of the master serving ``slot``, as the node on ``port`` sees it."""
        for fields in self.cluster_nodes(port):
            flags = fields[2].split(",")
            if "master" not in flags or "fail" in flags:
                continue
            for span in fields[8:]:
                if span.startswith("["):
                    continue  # a slot being imported or migrated
                first, _, last = span.partition("-")
                if int(first) <= slot <= int(last or first):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise LookupError(f"no live master serves slot {slot}")

    def _healthy(self) -> bool:
        running = self.ports
        try:
            masters: set[int] | None = None
            for port in running:
                info = self._info(port, "CLUSTER", "INFO")
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
                seen = set(self.master_ports(port))
                if masters is None:
                    masters = seen
                elif seen != masters:
                    return False  # the nodes do not agree yet
                role = self._info(port, "INFO", "replication")
                if "role:slave" in role and "master_link_status:up" not in role:
                    return False
            return masters is not None and len(masters) == self.masters and masters <= set(running)
        except (OSError, ValueError, IndexError):
            return False

    def master_ports(self, port: int | None = None) -> list[int]:
        """Ports of the live masters serving slots, as the node on ``port`` sees them."""
        ports = []
        for fields in self.cluster_nodes(port):
            flags = fields[2].split(",")
            serving = len(fields) > 8  # slot ranges follow the eight fixed fields
            if serving and "master" in flags and "fail" not in flags and "fail?" not in flags:
                ports.append(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(ports)

    def wait_healthy(self, seconds: float = 30.0) -> None:
        """Wait until every running node agrees: state ok, all slots served by live masters."""
        deadline = time.monotonic() + seconds
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster not healthy within {seconds}s")
            time.sleep(0.05)

    def kill(self, port: int) -> None:
        """``SIGKILL`` the node on ``port`` (a crashed master: its replica takes over)."""
        self.server(port).kill()

    def restart(self, port: int, seconds: float = 30.0) -> None:
        """Start the node on ``port`` again (it rejoins from its ``nodes.conf``) and wait."""
        self.server(port).start()
        self.wait_healthy(seconds)

    def failover(self, port: int, seconds: float = 30.0) -> None:
        """``CLUSTER FAILOVER`` on the replica on ``port``: it becomes its master's master."""
        reply = self._command(port, "CLUSTER", "FAILOVER")
        if reply != "OK":
            raise RuntimeError(f"CLUSTER FAILOVER on {port}: {reply}")
        deadline = time.monotonic() + seconds
        while port not in self.master_ports(port) or not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {port} not a healthy master within {seconds}s")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every node and remove their directories."""
        for server in self.servers:
            server.close()
        self.servers = []

    def __enter__(self) -> RedisClusterNodes:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisClusterNodes(ports={self.ports})"


def _resp(command: tuple[str, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_bulk(sock: socket.socket) -> str:
    """Read one bulk-string reply (``CLUSTER INFO``, ``CLUSTER NODES``, ``INFO``)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n")
    if not head.startswith(b"$"):
        raise ValueError(head.decode(errors="replace"))
    size = int(head[1:])
    while len(rest) < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        rest += chunk
    return rest[:size].decode()
