"""Private redis-server processes for tests that stop, slow or restart their server.

Never the shared server: each one listens on a free loopback port in its own directory.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_START = ROOT / "backends" / "redis-cluster" / "start.sh"
CLUSTER_STOP = ROOT / "backends" / "redis-cluster" / "stop.sh"
REDIS_START = ROOT / "backends" / "redis" / "start.sh"


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


def ping(port: int) -> bool:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() == "PONG"


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
            subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "shutdown"],
                capture_output=True,
                check=False,
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            self.kill()


def start_cluster(directory: Path) -> str:
    """Start a 3-master cluster with ``backends/redis-cluster/start.sh``; its URL."""
    ports: list[int] = []
    while len(ports) < 3:
        port = free_port(bus_offset=10000)
        if port not in ports:
            ports.append(port)
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
        info = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "cluster", "info"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
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
