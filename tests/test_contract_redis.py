"""The contract suite on Redis: fakeredis (always), the real server, a local cluster and a
primary with a replica behind a Sentinel."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
import pytest_asyncio
from conftest import service_url
from sentinel_servers import SentinelServers

from statekit.backends.redis import RedisBackend
from statekit.testing import StateBackendContract

pytestmark = pytest.mark.redis


def _prefix() -> str:
    return f"statekit-test:{uuid.uuid4().hex}:"


# Every standalone suite runs with auto-pipelining on (the default) and off.
PIPELINING = pytest.mark.parametrize(
    "auto_pipeline", [True, False], ids=["auto_pipeline", "direct"], scope="class"
)


@PIPELINING
class TestFakeRedisBackend(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, auto_pipeline: bool) -> AsyncIterator[RedisBackend]:
        client = fakeredis.FakeAsyncRedis()
        backend = RedisBackend(client, key_prefix=_prefix(), auto_pipeline=auto_pipeline)
        yield backend
        await backend.aclose()
        await client.aclose()


@PIPELINING
class TestRealRedisBackend(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, auto_pipeline: bool) -> AsyncIterator[RedisBackend]:
        backend = RedisBackend.from_url(
            service_url("STATEKIT_REDIS_URL"), key_prefix=_prefix(), auto_pipeline=auto_pipeline
        )
        yield backend
        await backend.clear()
        await backend.aclose()


@pytest.mark.slow
class TestRedisClusterBackend(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, redis_cluster_url: str) -> AsyncIterator[RedisBackend]:
        backend = RedisBackend.from_url(redis_cluster_url, key_prefix=_prefix())
        yield backend
        await backend.clear()
        await backend.aclose()


@pytest.fixture(scope="session")
def redis_sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A primary, its replica and a Sentinel of this session's own (free loopback ports)."""
    servers = SentinelServers(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        servers.start()
        yield servers.url(db=0)
    finally:
        servers.stop()


@pytest.mark.slow
@PIPELINING
class TestRedisSentinelBackend(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(
        self, redis_sentinel_url: str, auto_pipeline: bool
    ) -> AsyncIterator[RedisBackend]:
        backend = RedisBackend.from_url(
            redis_sentinel_url, key_prefix=_prefix(), auto_pipeline=auto_pipeline
        )
        yield backend
        await backend.clear()
        await backend.aclose()
