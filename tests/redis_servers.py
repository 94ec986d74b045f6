"""Private redis-server processes for tests that stop, slow or restart their server, and
a backend of a test's own on the shared one.

A private server never is the shared server: each one listens on a free loopback port in
its own directory.
"""

from __future__ import annotations

import asyncio
import contextlib
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


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(bus_offset: int | None = None) -> int:
    """A free loopback port (bind to port 0); with ``bus_offset``, port + offset too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if bus_offset is None:
            return port
        if port + bus_offset <= 65535 and _bindable(port + bus_offset):
            return port
    raise RuntimeError("no free port pair found")


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
        while not ping(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

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


def start_cluster(directory: Path) -> str:
    """Start a 3-master cluster with ``backends/redis-cluster/start.sh``; its URL."""
    ports = distinct_ports(3, bus_offset=10000)
    result = subprocess.run(
        ["bash", str(CLUSTER_START), str(directory), *map(str, ports)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        stop_cluster(directory)
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
