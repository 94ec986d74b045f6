"""Redis Cluster: ``redis+cluster://[user:pass@]host:7000,host2:7001`` (``rediss+cluster``).

Commands go through redis-py's cluster client, which routes each by its key's hash slot
and follows ``MOVED`` / ``ASK``. What statekit adds: every script loaded on every
primary up front, writes sent to their key's node explicitly (so the client sends them
once), and multi-key writes split into one command per hash slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from statekit.backends.redis.boundary import Closed
from statekit.backends.redis.connections import Command
from statekit.backends.redis.options import RedisConfig
from statekit.backends.redis.scripts import SCRIPTS
from statekit.backends.redis.transport import Limits, Transport
from statekit.errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ClusterTransport"]

T = TypeVar("T")


class _EndableLimits(Limits):
    """:class:`Limits` whose operations :meth:`end_all` ends: redis-py's cluster client
    answers a connection closed under a call by mapping the cluster again and sending
    once more, so closing the client alone would let a call under way reconnect. Each
    operation runs as a task of its own, which ``end_all`` cancels; its caller gets
    :class:`Closed` (a task per operation: the cluster client costs far more anyway)."""

    __slots__ = ("ended", "under_way")

    def __init__(
        self, timeout: float | None, pool_size: int | None, pool_timeout: float | None
    ) -> None:
        super().__init__(timeout, pool_size, pool_timeout)
        self.ended = False
        self.under_way: set[asyncio.Task[Any]] = set()

    def fresh(self) -> _EndableLimits:
        gate = self.gate
        if gate is None:
            return _EndableLimits(self.timeout, None, None)
        return _EndableLimits(self.timeout, gate.size, gate.timeout)

    async def run(self, awaitable: Awaitable[Any] | Any) -> Any:
        return await super().run(self._endable(awaitable))

    async def _endable(self, awaitable: Awaitable[Any]) -> Any:
        if self.ended:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise Closed("the backend was closed with aclose()")
        task = asyncio.ensure_future(awaitable)
        self.under_way.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if self.ended and task.cancelled() and not _cancel_requested():
                raise Closed("the backend was closed with aclose()") from None
            raise
        finally:
            self.under_way.discard(task)

    def end_all(self) -> None:
        """Refuse new operations and cancel those under way."""
        self.ended = True
        for task in list(self.under_way):
            task.cancel()


def _cancel_requested() -> bool:
    """Whether the running task itself was asked to stop (not only what it awaited);
    not knowable before Python 3.11, where it is taken as not."""
    task = asyncio.current_task()
    if sys.version_info < (3, 11) or task is None:  # pragma: no cover
        return False
    return task.cancelling() > 0


class ClusterTransport(Transport):
    """A Redis Cluster, each operation bounded by ``timeout`` and at most ``pool_size``
    of them in flight (redis-py's cluster pool raises instead of waiting when full)."""

    kind = "redis-cluster"
    client: RedisCluster

    def __init__(
        self,
        client: RedisCluster,
        *,
        timeout: float | None = None,
        pool_size: int | None = None,
        pool_timeout: float | None = 5.0,
        owns_client: bool = False,
    ) -> None:
        self.limits: _EndableLimits = _EndableLimits(timeout, pool_size, pool_timeout)
        super().__init__(client, self.limits, owns_client=owns_client)
        self._scripts_loaded = False
        self._scripts_lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: RedisConfig) -> Self:
        """A transport over a new cluster client (no I/O until first use).

        The client gets no socket timeout: redis-py's async cluster connections break
        under concurrent first use with one. Each operation is bounded here instead.
        """
        username, password, nodes = config.nodes()
        if config.passthrough.get("db", "0") != "0" or config.path() not in ([], ["0"]):
            raise ConfigurationError("Redis Cluster has only database 0")
        opts = config.options
        common = opts.connection_kwargs()
        del common["socket_timeout"]
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=username,
            password=password,
            ssl=config.scheme == "rediss+cluster",
            max_connections=opts.pool_size,
            **config.tls_kwargs(),
            **common,
        )
        return cls(
            client,
            timeout=opts.timeout,
            pool_size=opts.pool_size,
            pool_timeout=opts.timeout,
            owns_client=True,
        )

    async def read(self, command: Command) -> Any:
        await self.follow_loop()
        # Through the cluster client's own retries, which re-map the cluster on a
        # connection error.
        return await self._call(command, None)

    async def read_many(self, commands: Sequence[Command]) -> list[Any]:
        await self.follow_loop()
        await self._load_scripts()
        try:
            return await self._pipelined(commands)
        except redis_errors.NoScriptError:
            # A node lost its scripts (failover, SCRIPT FLUSH): load them again and send
            # the reads once more (a refresh sent twice only moves a deadline again).
            for script in SCRIPTS.values():
                await self.limits.run(self.client.script_load(script))
            return await self._pipelined(commands)

    async def _pipelined(self, commands: Sequence[Command]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return cast(list[Any], await self.limits.run(pipe.execute()))

    async def write(self, key: str, command: Command) -> Any:
        await self.follow_loop()
        return await self._call(command, key)

    async def write_grouped(
        self,
        items: Sequence[T],
        key: Callable[[T], str],
        command: Callable[[Sequence[T]], Command],
    ) -> list[tuple[Sequence[T], Any]]:
        # A command may only name keys of one slot.
        by_slot: dict[int, list[T]] = {}
        for item in items:
            by_slot.setdefault(key_slot(key(item).encode()), []).append(item)
        groups = list(by_slot.values())
        replies = await asyncio.gather(
            *(self.write(key(group[0]), command(group)) for group in groups)
        )
        return list(zip(groups, replies, strict=True))

    async def _call(self, command: Command, write_key: str | None) -> Any:
        """One command, ``EVALSHA`` included.

        A write is sent to the node of ``write_key`` explicitly, which makes redis-py
        send it once: a ``MOVED`` or ``ASK`` reply (the command did not run) is still
        followed.
        """
        await self._load_scripts()
        options: dict[str, Any] = {}
        if write_key is not None:
            await self.client.initialize()  # a no-op unless a failure asked for a new map
            options["target_nodes"] = self.client.get_node_from_key(write_key)
        try:
            return await self.limits.run(self.client.execute_command(*command, **options))
        except redis_errors.NoScriptError:
            # The script did not run: load it (a failover, SCRIPT FLUSH) and send once more.
            await self.limits.run(self.client.script_load(SCRIPTS[command[1]]))
            return await self.limits.run(self.client.execute_command(*command, **options))

    async def _load_scripts(self) -> None:
        """Load every script on every primary, once, up front.

        redis-py's cluster client misroutes EVALSHA when many calls hit NOSCRIPT at once
        (MOVED replies, then reconnect storms), so NOSCRIPT is kept for the rare node that
        loses its scripts later (failover, SCRIPT FLUSH).
        """
        if not self._scripts_loaded:
            async with self._scripts_lock:
                if not self._scripts_loaded:
                    for script in SCRIPTS.values():
                        await self.limits.run(self.client.script_load(script))
                    self._scripts_loaded = True

    async def rebind(self) -> None:
        """Every node's connections (the startup nodes' too) reset, each opening again
        on its next use; the gate and the script lock new."""
        self.limits = self.limits.fresh()
        self.recorder.watch(self.limits.gate)
        self._scripts_lock = asyncio.Lock()
        manager = self.client.nodes_manager
        for node in [*manager.startup_nodes.values(), *manager.nodes_cache.values()]:
            with contextlib.suppress(RuntimeError, OSError, redis_errors.RedisError):
                # As on one server: closing a closed loop's transport raises RuntimeError
                # once redis-py has forgotten it.
                await node.disconnect()

    async def aclose(self) -> None:
        self.closed = True
        await self.follow_loop()
        self.limits.end_all()
        await super().aclose()

    async def server_info(self) -> dict[str, Any]:
        info = await super().server_info()
        # The cluster client answers per node: {node name: that node's INFO}.
        return info if "redis_version" in info else cast(dict[str, Any], next(iter(info.values())))
