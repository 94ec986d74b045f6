"""The contract suite on Redis: fakeredis (always), the real server and a local cluster."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
import pytest_asyncio
from conftest import service_url

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
