"""The seam between the Redis backend and its servers: one small read/write interface.

:class:`~statekit.backends.redis.RedisBackend` writes the key layout and its operations
once, over :class:`Transport`; each way of reaching Redis is one transport class:

* :class:`StandaloneTransport` (here): one server, every command sent by statekit itself
  (:mod:`~statekit.backends.redis.connections`), with auto-pipelining
  (:mod:`~statekit.backends.redis.pipeline`) or on pooled connections;
* :class:`~statekit.backends.redis.cluster.ClusterTransport`: a Redis Cluster through
  redis-py's cluster client (scripts loaded on every primary, writes sent to the key's
  node, multi-key writes split by hash slot);
* :class:`~statekit.backends.redis.sentinel.SentinelTransport`: the primary that the
  Sentinels name, found again after a failover.

What every transport guarantees: a read whose reply is lost (the connection dropped
after it was sent) may be sent again; a write never is, whatever the client's ``Retry``
says (it may have been applied: sending it again could apply it twice, or make a
conditional write conflict with itself), so its caller gets the connection error. An
``EVALSHA`` the server does not know is loaded and sent once more (it did not run).
Transports raise redis-py's exceptions; the backend maps them to statekit's in its
:class:`~statekit.backends.redis.boundary.ErrorBoundary`.

Event loops: connections belong to the loop they were opened on. A transport used from
another loop than before (a module-level store used by two ``asyncio.run()`` calls, one
after the other) notices at its next call and starts afresh on the running loop: new
connections, a new pipeline and gate, the old loop's connections dropped without
awaiting anything of that loop (which has usually been closed). One loop at a time:
using one backend from two live loops at once (two threads) is not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from statekit.backends.gate import FifoGate
from statekit.backends.redis.boundary import ConnectHook
from statekit.backends.redis.coalesce import coalescing
from statekit.backends.redis.connections import (
    Command,
    KeptConnections,
    NotSent,
    PooledConnections,
    Send,
    send_with_scripts,
)
from statekit.backends.redis.options import RedisConfig
from statekit.backends.redis.pipeline import AutoPipeline
from statekit.backends.redis.scripts import SCRIPTS
from statekit.telemetry.recorder import Recorder

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Limits", "StandaloneTransport", "Transport"]

T = TypeVar("T")
#: Keys asked of each ``SCAN`` step, and read back per batch by ``iter_entries``.
SCAN_BATCH = 200


def raise_errors(replies: list[Any]) -> list[Any]:
    """``replies``, unless one is an error reply: then that error, raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def resend_delay(resends: int) -> float:
    """Backoff before sending a read again: 0.1 s doubling, at most 0.5 s, as the
    ``ExponentialBackoff`` that :meth:`RedisOptions.retry` gives connections."""
    return float(min(0.5, 0.05 * 2**resends))


class Limits:
    """What bounds an operation: its turn at a first come, first served gate of
    ``pool_size`` places (each caller waiting at most ``pool_timeout`` seconds), then
    ``timeout`` seconds to complete; ``None`` for either means no bound of that kind."""

    __slots__ = ("gate", "timeout")

    def __init__(
        self, timeout: float | None, pool_size: int | None, pool_timeout: float | None
    ) -> None:
        self.timeout = timeout
        self.gate = (
            None if pool_size is None else FifoGate(pool_size, pool_timeout, "Redis connection")
        )

    def fresh(self) -> Limits:
        """The same bounds with a gate of their own (for a new event loop: the old gate's
        places may be held by tasks of a loop that has stopped)."""
        gate = self.gate
        if gate is None:
            return Limits(self.timeout, None, None)
        return Limits(self.timeout, gate.size, gate.timeout)

    async def run(self, awaitable: Awaitable[Any] | Any) -> Any:
        """Await ``awaitable`` in its turn at the gate, then within the timeout.

        redis-py's client types many commands as "awaitable or plain value" (the sync
        and async clients share them), hence ``Any`` at this one boundary.
        """
        if self.gate is None:
            if self.timeout is None:
                return await awaitable
            return await asyncio.wait_for(awaitable, self.timeout)
        try:
            await self.gate.acquire()
        except BaseException:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # no place in time: it will never run
            raise
        try:
            if self.timeout is None:
                return await awaitable
            return await asyncio.wait_for(awaitable, self.timeout)
        finally:
            self.gate.release()


class Transport(ABC):
    """How the backend's commands reach Redis (see the module doc for the guarantees).

    ``client`` is the redis-py client underneath (closed by :meth:`aclose` only when the
    transport owns it); ``limits`` bound what goes through the client's own calls.
    """

    #: The engine name :meth:`RedisBackend.describe` reports.
    kind: ClassVar[str]
    #: Options beyond :class:`RedisOptions`' common ones that this transport takes.
    extra_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, client: Redis | RedisCluster, limits: Limits, *, owns_client: bool) -> None:
        self.client = client
        self.limits = limits
        self.owns_client = owns_client
        #: Batch sizes, gate waits and places in use, for :mod:`statekit.telemetry`.
        self.recorder = Recorder()
        self.recorder.watch(limits.gate)
        #: Set first thing by :meth:`aclose`: a call under way then sends nothing more.
        self.closed = False
        #: The connect hook of a client the transport built (``from_config``), told of
        #: the close so that no connection opens under a call that was under way.
        self.connect_hook: ConnectHook | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._moving: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    async def follow_loop(self) -> None:
        """Start afresh on the running loop when it is not the one the connections were
        opened on (see the module doc); called before a call's first I/O. Calls made on
        the new loop while the old one's connections are dropped wait for that."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        if self._loop is None:
            self._loop = loop
            return
        if self._moving is not None and self._moving[0] is loop:
            await self._moving[1].wait()
            return
        moved = asyncio.Event()
        self._moving = (loop, moved)
        try:
            await self.rebind()
        finally:
            self._loop, self._moving = loop, None
            moved.set()

    @abstractmethod
    async def rebind(self) -> None:
        """Drop what the previous event loop opened, awaiting nothing of that loop, so
        that the next call opens connections on the running one."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: RedisConfig) -> Self:
        """A transport that owns a new client for ``config``; no I/O until first use."""

    @abstractmethod
    async def read(self, command: Command) -> Any:
        """One read command's reply (sent again if its reply is lost)."""

    @abstractmethod
    async def read_many(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of read commands sent together (one round trip per server)."""

    @abstractmethod
    async def write(self, key: str, command: Command) -> Any:
        """One write command on ``key``'s server, never sent twice; its reply."""

    async def write_grouped(
        self,
        items: Sequence[T],
        key: Callable[[T], str],
        command: Callable[[Sequence[T]], Command],
    ) -> list[tuple[Sequence[T], Any]]:
        """Write ``items`` of any scopes with as few commands as the server allows; each
        group of items with its command's reply.

        ``command(group)`` builds the write of a group of items, ``key(item)`` names a key
        of the item's scope: one server takes one command for all (atomic), as here; a
        cluster one per hash slot, concurrently (atomic per slot). Items keep their order.
        """
        return [(items, await self.write(key(items[0]), command(items)))]

    async def scan(self, pattern: str) -> AsyncIterator[bytes | str]:
        """``SCAN MATCH pattern`` (every primary of a cluster), each step bounded."""
        await self.follow_loop()
        keys = aiter(self.client.scan_iter(match=pattern, count=SCAN_BATCH))
        while (key := await self.limits.run(anext(keys, None))) is not None:
            yield key

    async def server_info(self) -> dict[str, Any]:
        """``INFO`` of the server (of one node, on a cluster)."""
        await self.follow_loop()
        return cast(dict[str, Any], await self.limits.run(self.client.info()))

    async def aclose(self) -> None:
        """Close what the transport opened, and the client if it owns it; calls under way
        send nothing more (a read whose reply is lost is not sent again)."""
        self.closed = True
        if self.connect_hook is not None:
            self.connect_hook.closed = True
        await self.follow_loop()
        if self.owns_client:
            await self.client.aclose()


class StandaloneTransport(Transport):
    """One server: every command sent on statekit's own round trips.

    With ``auto_pipeline`` concurrent calls share round trips on a few kept connections,
    each bounded by ``timeout`` (else the client's socket timeout); without it, each call
    takes a connection of the client's pool in its turn at a gate of ``pool_size`` (by
    default a ``BlockingConnectionPool``'s own size and timeout: that pool serves its
    waiters in no particular order).
    """

    kind = "redis"
    client: Redis
    #: Whether :meth:`from_config` puts the gate of ``pool_size`` places in front of the
    #: client's pool with auto-pipelining too (a pool that raises when full needs it).
    gate_with_pipeline: ClassVar[bool] = False

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float | None = None,
        pool_size: int | None = None,
        pool_timeout: float | None = 5.0,
        auto_pipeline: bool = True,
        owns_client: bool = False,
    ) -> None:
        pool = client.connection_pool
        if pool_size is None and not auto_pipeline and isinstance(pool, BlockingConnectionPool):
            pool_size, pool_timeout = pool.max_connections, pool.timeout
        super().__init__(client, Limits(timeout, pool_size, pool_timeout), owns_client=owns_client)
        retry = client.get_retry()
        self._resends = 0 if retry is None else max(0, retry.get_retries())
        self._auto_pipeline = auto_pipeline
        # A batch is bounded by the backend's timeout, else by the client's own socket
        # timeout (what bounds each of its direct calls too).
        self._batch_timeout = (
            timeout if timeout is not None else pool.connection_kwargs.get("socket_timeout")
        )
        self._start_sending()

    def _start_sending(self) -> None:
        """Connections and (with auto-pipelining) a pipeline of their own."""
        self.connections: KeptConnections | PooledConnections = (
            KeptConnections(self.client) if self._auto_pipeline else PooledConnections(self.client)
        )
        self._round_trip: Send = functools.partial(
            send_with_scripts, self.connections.round_trip, SCRIPTS
        )
        self.pipeline: AutoPipeline | None = None
        self._send: Send = self._send_direct
        if self._auto_pipeline:
            self.pipeline = AutoPipeline(
                coalescing(self._round_trip), timeout=self._batch_timeout, recorder=self.recorder
            )
            self._send = self.pipeline.execute_many

    async def rebind(self) -> None:
        """New connections, pipeline and gate; the old loop's kept connections and the
        client pool's are dropped, nothing of that loop awaited."""
        kept = self.connections
        self.limits = self.limits.fresh()
        self.recorder.watch(self.limits.gate)
        self._start_sending()
        await kept.abandon()
        with contextlib.suppress(RuntimeError, OSError, redis_errors.RedisError):
            # Closing a transport of a closed loop raises RuntimeError after redis-py has
            # already forgotten it: the connection is reset, its socket closed when collected.
            await self.client.connection_pool.disconnect(inuse_connections=True)

    @classmethod
    def from_config(cls, config: RedisConfig) -> Self:
        """A transport over a new client for ``config`` (no I/O until first use).

        Without auto-pipelining the client enforces ``timeout`` on its sockets and the
        gate admits ``pool_size`` operations at once, in arrival order; with it, each
        round trip is bounded by ``timeout`` here (a socket timeout costs redis-py an
        extra task per send and a timer per reply, a good part of a pipelined call) and
        the pipeline needs only a few connections.
        """
        opts = config.options
        common = opts.connection_kwargs()
        if opts.auto_pipeline:
            del common["socket_timeout"]
        hook = ConnectHook()
        gated = cls.gate_with_pipeline or not opts.auto_pipeline
        transport = cls(
            cls.new_client(config, common, hook),
            timeout=opts.timeout if opts.auto_pipeline else None,
            pool_size=opts.pool_size if gated else None,
            pool_timeout=opts.timeout,
            auto_pipeline=opts.auto_pipeline,
            owns_client=True,
        )
        transport.connect_hook = hook
        return transport

    @classmethod
    def new_client(
        cls, config: RedisConfig, connection_kwargs: dict[str, Any], hook: ConnectHook
    ) -> Redis:
        """The client :meth:`from_config` builds the transport over: ``config``'s server,
        its connections made with ``connection_kwargs`` and announced to ``hook``."""
        pool = BlockingConnectionPool.from_url(
            config.driver_url,
            max_connections=config.options.pool_size,
            timeout=config.options.timeout,
            redis_connect_func=hook.on_connect,
            **connection_kwargs,
        )
        return Redis.from_pool(pool)

    async def _send_direct(self, commands: Sequence[Command]) -> list[Any]:
        """One round trip of its own (no auto-pipelining)."""
        return cast(list[Any], await self.limits.run(self._round_trip(commands)))

    async def read_many(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one round trip; their replies (an error reply raised).

        When the connection drops after the commands were sent, they are sent again, up
        to the client's retry count. Nothing is sent again after a timeout, nor when no
        connection could be opened (opening one was already retried).
        """
        if asyncio.get_running_loop() is not self._loop:
            await self.follow_loop()
        resends = 0
        while True:
            try:
                return raise_errors(await self._send(commands))
            except NotSent:
                raise
            except redis_errors.ConnectionError:
                if resends >= self._resends or self.closed:
                    raise
            resends += 1
            await asyncio.sleep(resend_delay(resends))

    async def read(self, command: Command) -> Any:
        (reply,) = await self.read_many((command,))
        return reply

    async def write(self, key: str, command: Command) -> Any:
        if asyncio.get_running_loop() is not self._loop:
            await self.follow_loop()
        # Sent once: a lost reply leaves the outcome unknown, so its error is raised.
        (reply,) = await self._send((command,))
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def aclose(self) -> None:
        self.closed = True
        await self.follow_loop()
        if self.pipeline is not None:
            await self.pipeline.aclose()
        await self.connections.aclose()
        await super().aclose()
