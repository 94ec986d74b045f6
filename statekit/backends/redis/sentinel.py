"""Redis Sentinel: ``redis+sentinel://[user:pass@]host:26379,host2:26379/mymaster/0``.

The hosts are Sentinels, the path names the monitored service (``mymaster``) and the
database (default 0); ``rediss+sentinel://`` speaks TLS to the Sentinels and the data
nodes. The URL's user and password are the data nodes' (``requirepass`` / ACL of the
primary); Sentinels with a password of their own take the ``sentinel_password`` keyword
option (never in the URL, which is shown in messages).

Commands go to the primary the Sentinels name, exactly as to a standalone server
(auto-pipelining, reads sent again after a lost reply, writes never); scripts are loaded
on a new primary at their first ``NOSCRIPT``. A connection opened (or opened again)
asks the Sentinels where the primary is. After a failover the old primary keeps its
clients, and accepts their writes, until the Sentinels reconfigure it as a replica (about
ten seconds later, and those writes are then lost), so while the backend is in use it
also asks the Sentinels once a second and, when the primary has moved, closes all its
connections: each opens again to the new primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any, cast

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from statekit.backends.redis.boundary import ConnectHook
from statekit.backends.redis.connections import KeptConnections, usable
from statekit.backends.redis.options import RedisConfig
from statekit.backends.redis.transport import StandaloneTransport
from statekit.errors import ConfigurationError

__all__ = ["WATCH_INTERVAL", "SentinelTransport"]

#: Seconds between two questions to the Sentinels about where the primary is.
WATCH_INTERVAL = 1.0


class SentinelTransport(StandaloneTransport):
    """The Sentinels' current primary, reached as a standalone server.

    The primary's pool (redis-py's ``SentinelConnectionPool``) raises instead of waiting
    when full, so the gate of ``pool_size`` places is always in front of it.
    """

    kind = "redis-sentinel"
    extra_options = frozenset({"sentinel_password"})
    gate_with_pipeline = True
    #: The task asking the Sentinels where the primary is, started by :meth:`follow_loop`.
    _watcher: asyncio.Task[None] | None = None

    async def follow_loop(self) -> None:
        """As every transport, and the watcher runs on the running loop: it starts with
        the first call, and again with the first call on each new loop."""
        await super().follow_loop()
        stale = self._watcher is None or self._watcher.get_loop() is not self._loop
        if stale and not self.closed:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def rebind(self) -> None:
        """As a standalone transport, and the Sentinels' own connections too."""
        await super().rebind()
        pool = self.client.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                with contextlib.suppress(RuntimeError, OSError, redis_errors.RedisError):
                    await sentinel.connection_pool.disconnect(inuse_connections=True)

    @classmethod
    def new_client(
        cls, config: RedisConfig, connection_kwargs: dict[str, Any], hook: ConnectHook
    ) -> Redis:
        """A client of the primary that the Sentinels of ``config`` name."""
        username, password, sentinels = config.nodes()
        service, db = _service_and_db(config)
        opts = config.options
        tls: dict[str, Any] = config.tls_kwargs()
        if tls and config.scheme != "rediss+sentinel":
            raise ConfigurationError(f"ssl_* options need rediss+sentinel://, not {config.url}")
        if config.scheme == "rediss+sentinel":
            tls["ssl"] = True
        sentinel_kwargs = {
            "socket_timeout": opts.timeout,
            "socket_connect_timeout": opts.connect_timeout,
            "retry": opts.retry(),
            "password": opts.sentinel_password,
            **tls,
        }
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinels,
            sentinel_kwargs=sentinel_kwargs,
            username=username,
            password=password,
            db=db,
            redis_connect_func=hook.on_connect,
            **tls,
            **connection_kwargs,
        )
        return cast(Redis, sentinel.master_for(service, max_connections=opts.pool_size))

    async def _watch(self) -> None:
        """Every :data:`WATCH_INTERVAL` seconds, ask the Sentinels for the primary; once
        it has moved, close every connection (kept, pooled, in use) so that each opens
        again to the new one. A Sentinel that does not answer changes nothing."""
        pool = self.client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        primary = None
        while True:
            try:
                address = await pool.sentinel_manager.discover_master(pool.service_name)
            except (redis_errors.RedisError, OSError):
                address = primary
            if primary is not None and address != primary:
                await self.connections.disconnect()
                await pool.disconnect(inuse_connections=True)
            elif address is not None and isinstance(self.connections, KeptConnections):
                # One that was still connecting to the old primary as it moved.
                await self.connections.disconnect(unless=functools.partial(_idle_or_at, address))
            primary = address
            await asyncio.sleep(WATCH_INTERVAL)

    async def aclose(self) -> None:
        self.closed = True
        await self.follow_loop()
        if self._watcher is not None and self._watcher.get_loop() is self._loop:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await super().aclose()
        pool = self.client.connection_pool
        if self.owns_client and isinstance(pool, SentinelConnectionPool):
            # The clients of the Sentinels themselves, opened to ask for the primary.
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def _idle_or_at(address: tuple[str, int], connection: AbstractConnection) -> bool:
    """``connection`` is closed, or connected to ``address``."""
    if not usable(connection) or not isinstance(connection, Connection):
        return True
    return (connection.host, connection.port) == address


def _service_and_db(config: RedisConfig) -> tuple[str, int]:
    """The service name and database from the URL's path (``/mymaster/0``)."""
    path = config.path()
    if not path or not path[0] or len(path) > 2:
        raise ConfigurationError(
            f"A Sentinel URL names its service: redis+sentinel://host:26379/mymaster/0, "
            f"not {config.url}"
        )
    db = path[1] if len(path) == 2 else config.passthrough.get("db", "0")
    if not db.isdigit():
        raise ConfigurationError(f"Bad Redis database {db!r} in {config.url}")
    return path[0], int(db)
