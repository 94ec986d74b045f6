"""Which transport serves a Redis backend: by its URL's scheme, or by the kind of client
a host hands over (a cluster client, a Sentinel's ``master_for`` client, a plain one)."""

from __future__ import annotations

from redis import asyncio as aioredis

from statekit.backends.redis.cluster import ClusterTransport
from statekit.backends.redis.sentinel import SentinelTransport
from statekit.backends.redis.transport import StandaloneTransport, Transport

__all__ = ["TRANSPORTS", "transport_for"]

#: scheme -> the transport its URLs are served by.
TRANSPORTS: dict[str, type[Transport]] = {
    "redis": StandaloneTransport,
    "rediss": StandaloneTransport,
    "unix": StandaloneTransport,
    "redis+cluster": ClusterTransport,
    "rediss+cluster": ClusterTransport,
    "redis+sentinel": SentinelTransport,
    "rediss+sentinel": SentinelTransport,
}


def transport_for(
    client: aioredis.Redis | aioredis.RedisCluster,
    *,
    timeout: float | None,
    pool_size: int | None,
    pool_timeout: float | None,
    auto_pipeline: bool,
    owns_client: bool,
) -> Transport:
    """The transport over a host's own client, by the client's kind (closed on close only
    if ``owns_client``)."""
    if isinstance(client, aioredis.RedisCluster):
        return ClusterTransport(
            client,
            timeout=timeout,
            pool_size=pool_size,
            pool_timeout=pool_timeout,
            owns_client=owns_client,
        )
    mode = (
        SentinelTransport
        if isinstance(client.connection_pool, aioredis.SentinelConnectionPool)
        else StandaloneTransport
    )
    return mode(
        client,
        timeout=timeout,
        pool_size=pool_size,
        pool_timeout=pool_timeout,
        auto_pipeline=auto_pipeline,
        owns_client=owns_client,
    )
