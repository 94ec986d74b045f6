"""A Redis primary, its replica and a Sentinel watching them, owned by the test.

Never the shared server: every process listens on a free loopback port, keeps its files
in the test's own directory and is stopped by its own pid.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from redis_servers import NO_PERSISTENCE, RedisServer, distinct_ports, redis_cli

SERVICE = "mymaster"
_QUIET = (*NO_PERSISTENCE, "--repl-diskless-sync-delay", "0")


def _reply(port: int, *args: str) -> list[str]:
    """``redis-cli`` on a loopback port; its reply, one line per element."""
    return redis_cli(port, *args).splitlines()


def _info(port: int, section: str) -> dict[str, str]:
    lines = _reply(port, "info", section)
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def _wait(what: str, ready: Callable[[], bool], seconds: float) -> None:
    """Poll ``ready()`` until it is true, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class SentinelServers:
    """One primary, one replica of it, one Sentinel monitoring them as ``mymaster``.

    :meth:`failover` runs ``SENTINEL FAILOVER`` and waits until the roles have switched
    everywhere: the Sentinel names the replica, which is a primary, and the old primary
    is its connected replica.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        first, second, self.sentinel_port = distinct_ports(3)
        self.nodes = {
            first: RedisServer(directory / "a", first, *_QUIET),
            second: RedisServer(
                directory / "b", second, *_QUIET, "--replicaof", "127.0.0.1", str(first)
            ),
        }
        self.sentinel: subprocess.Popen[bytes] | None = None
        self._first = first

    def url(self, db: int = 0, scheme: str = "redis+sentinel") -> str:
        return f"{scheme}://127.0.0.1:{self.sentinel_port}/{SERVICE}/{db}"

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()
        config = self.directory / "sentinel.conf"  # the Sentinel rewrites it: its own copy
        config.write_text(
            f"sentinel monitor {SERVICE} 127.0.0.1 {self._first} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 2000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self.sentinel = subprocess.Popen(
            [
                "redis-server",
                str(config),
                "--sentinel",
                "--port",
                str(self.sentinel_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "sentinel.log"),
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait("the replica to sync", lambda: self._synced(self.primary_port()), 15)
        _wait("the Sentinel to see a good replica", self._replica_known, 15)

    def primary_port(self) -> int:
        """The primary's port as the Sentinel names it."""
        reply = _reply(self.sentinel_port, "sentinel", "get-master-addr-by-name", SERVICE)
        return int(reply[1]) if len(reply) == 2 else -1

    def replica_port(self) -> int:
        primary = self.primary_port()
        return next(port for port in self.nodes if port != primary)

    def _synced(self, primary: int) -> bool:
        """The other node replicates ``primary`` and is connected to it."""
        replica = next(port for port in self.nodes if port != primary)
        info = _info(replica, "replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _replica_known(self) -> bool:
        lines = _reply(self.sentinel_port, "sentinel", "replicas", SERVICE)
        fields = dict(zip(lines[::2], lines[1::2], strict=False))
        return fields.get("flags") == "slave" and fields.get("master-link-status") == "ok"

    def failover(self, seconds: float = 15) -> int:
        """``SENTINEL FAILOVER``, then wait until the Sentinel names the replica as the
        primary and it is one; the new primary's port. (The old primary is reconfigured
        as a replica about ten seconds later: see :meth:`wait_demoted`.)"""
        old = self.primary_port()
        new = self.replica_port()
        reply = _reply(self.sentinel_port, "sentinel", "failover", SERVICE)
        if reply != ["OK"]:
            raise RuntimeError(f"SENTINEL FAILOVER refused: {reply}")
        _wait(
            "the Sentinel to name the new primary",
            lambda: self.primary_port() == new and self.role(new) == "master",
            seconds,
        )
        assert self.primary_port() != old
        return new

    def wait_replicated(self, seconds: float = 10) -> float:
        """Until the replica has received everything the primary has applied so far (its
        replication offset reached the primary's); how long that took, in seconds."""
        primary = self.primary_port()
        target = int(_info(primary, "replication")["master_repl_offset"])
        replica = self.replica_port()
        start = time.monotonic()

        def caught_up() -> bool:
            return int(_info(replica, "replication").get("slave_repl_offset", -1)) >= target

        _wait("the replica to catch up", caught_up, seconds)
        return time.monotonic() - start

    def role(self, port: int) -> str:
        return _info(port, "replication").get("role", "")

    def wait_demoted(self, seconds: float = 30) -> None:
        """Until the old primary replicates the new one."""
        _wait("the old primary to replicate", lambda: self._synced(self.primary_port()), seconds)

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.kill()
            self.sentinel.wait(timeout=10)
            self.sentinel = None
        for node in self.nodes.values():
            node.kill()
