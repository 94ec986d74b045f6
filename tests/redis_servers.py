"""Private redis-server processes for tests that stop, slow or restart their server, and
a backend of a test's own on the shared one.

A private server never is the shared server: each one listens on a free loopback port in
its own directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from services import cleared, service_url

from statekit.backends.redis import RedisBackend

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_START = ROOT / "backends" / "redis-cluster" / "start.sh"
CLUSTER_STOP = ROOT / "backends" / "redis-cluster" / "stop.sh"
REDIS_START = ROOT / "backends" / "redis" / "start.sh"
#: Arguments of a server whose data need not survive it.
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


#: Where test servers listen: below the kernel's ephemeral range (32768 and up), so no
#: port the kernel hands a client connection or a ``bind`` to port 0 is ever one of them,
#: and below 22000, so each one's cluster bus port (+ 10000) stays under 32768 too.
SERVER_PORTS = range(12000, 22000)


def _worker_ports() -> range:
    """This process's own slice of :data:`SERVER_PORTS`: each pytest-xdist worker
    (``PYTEST_XDIST_WORKER=gw<N>``) has a slice no other worker of the run picks from, so
    two workers never race for a port between choosing it and binding it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker) if worker.isdigit() else 0
    size = len(SERVER_PORTS) // max(count, 1)
    start = SERVER_PORTS.start + (index % max(count, 1)) * size
    return range(start, start + size)


_picked = itertools.count(random.randrange(len(SERVER_PORTS)))


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(bus_offset: int | None = None) -> int:
    """A loopback port nothing listens on, from this worker's own slice (the next one
    after the last it gave, so a port just closed is not handed out again at once); with
    ``bus_offset``, port + offset is free too."""
    ports = _worker_ports()
    for _ in range(len(ports)):
        port = ports[next(_picked) % len(ports)]
        if _bindable(port) and (bus_offset is None or _bindable(port + bus_offset)):
            return port
    raise RuntimeError("no free port (pair) found")


def distinct_ports(count: int, bus_offset: int | None = None) -> list[int]:
    """``count`` different free loopback ports; with ``bus_offset``, each port + offset is
    free too and none of them is another's port + offset."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(bus_offset)
        if port not in ports and (bus_offset is None or port + bus_offset not in ports):
            ports.append(port)
    return ports


def redis_cli(port: int, *args: str) -> str:
    """``redis-cli`` on a loopback port, at most 10 s; its reply as printed (one line per
    element of an array)."""
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return result.stdout


def ping(port: int) -> bool:
    return redis_cli(port, "ping").strip() == "PONG"


def private_prefix(tag: str = "t") -> str:
    """A key prefix no other test uses on the shared server."""
    return f"statekit-test:{tag}:{uuid.uuid4().hex}:"


def shared_backend(tag: str = "t", **options: Any) -> AbstractAsyncContextManager[RedisBackend]:
    """A backend on the shared server (``STATEKIT_REDIS_URL``) under a prefix of its own;
    what it wrote is cleared and its connections closed afterwards."""
    url = service_url("STATEKIT_REDIS_URL")
    return cleared(RedisBackend.from_url(url, key_prefix=private_prefix(tag), **options))


class PortTakenError(RuntimeError):
    """Another process bound the port between :func:`free_port` and the server's start:
    start again on another port."""


class RedisServer:
    """A non-daemonized redis-server owned by the test (stopped by its own pid)."""

    def __init__(self, directory: Path, port: int, *args: str) -> None:
        self.directory = directory
        self.port = port
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                *self.args,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--enable-debug-command",
                "local",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None and self._port_taken():
                self.process = None
                raise PortTakenError(f"port {self.port} was taken before redis-server bound it")
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        """The server on the port is this one (its pid): another process's server that
        holds the port never passes for it."""
        assert self.process is not None
        lines = redis_cli(self.port, "info", "server").splitlines()
        return f"process_id:{self.process.pid}" in (line.strip() for line in lines)

    def _port_taken(self) -> bool:
        log = self.directory / "redis.log"
        return log.exists() and "Address already in use" in log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the server vanishes as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def shutdown(self) -> None:
        """A clean ``SHUTDOWN`` (the AOF is flushed), waiting for the process to exit."""
        if self.process is not None:
            redis_cli(self.port, "shutdown")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            self.kill()

    @contextlib.asynccontextmanager
    async def backend(self, **options: Any) -> AsyncIterator[RedisBackend]:
        """A backend on this server (``options`` as ``from_url`` takes them), closed after
        the block."""
        backend = RedisBackend.from_url(self.url, **options)
        try:
            yield backend
        finally:
            await backend.aclose()

    @contextlib.asynccontextmanager
    async def client(self, **options: Any) -> AsyncIterator[aioredis.Redis]:
        """A plain redis-py client of this server, to configure or inspect it; closed after
        the block."""
        client = aioredis.Redis.from_url(self.url, **options)
        try:
            yield client
        finally:
            await client.aclose()

    @contextlib.asynccontextmanager
    async def busy(self, seconds: float) -> AsyncIterator[asyncio.Task[Any]]:
        """The server kept busy for ``seconds`` by a ``DEBUG SLEEP`` from a client of its
        own: the task awaiting that command (the client is closed after the block)."""
        async with self.client(socket_timeout=30) as blocker:
            await blocker.ping()  # type: ignore[misc]
            sleeping = asyncio.create_task(
                blocker.execute_command("DEBUG", "SLEEP", str(seconds))  # type: ignore[no-untyped-call]
            )
            await asyncio.sleep(0.1)  # let DEBUG SLEEP reach the server first
            yield sleeping


def start_cluster(directory: Path, attempts: int = 3) -> str:
    """Start a 3-master cluster with ``backends/redis-cluster/start.sh``; its URL. On
    ports another process took meanwhile (the script says so), again on other ports."""
    for _ in range(attempts - 1):
        try:
            return _start_cluster_on(directory, distinct_ports(3, bus_offset=10000))
        except PortTakenError:
            continue
    return _start_cluster_on(directory, distinct_ports(3, bus_offset=10000))


def _start_cluster_on(directory: Path, ports: list[int]) -> str:
    result = subprocess.run(
        ["bash", str(CLUSTER_START), str(directory), *map(str, ports)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        stop_cluster(directory)
        if "already listens" in result.stderr:
            raise PortTakenError(f"cluster did not start: {result.stderr}")
        raise RuntimeError(f"cluster did not start: {result.stderr}")
    for port in ports:
        info = redis_cli(port, "cluster", "info")
        if "cluster_state:ok" not in info:
            stop_cluster(directory)
            raise RuntimeError(f"cluster node {port} is not ok: {info}")
    return result.stdout.strip().splitlines()[-1]


def stop_cluster(directory: Path) -> None:
    subprocess.run(
        ["bash", str(CLUSTER_STOP), str(directory), "--delete"],
        capture_output=True,
        check=False,
        timeout=60,
    )
