"""The contract suite on Redis: fakeredis (always), the real server, a local cluster and a
primary with a replica behind a Sentinel."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
import pytest_asyncio
from services import on, open_target

from benchmarks.matrix import REDIS, REDIS_CLUSTER, REDIS_SENTINEL
from statekit.backends.base import StateBackend
from statekit.backends.redis import RedisBackend
from statekit.testing import ErasureContract, ExpiryContract, StateBackendContract

pytestmark = pytest.mark.redis


def _prefix() -> str:
    return f"statekit-test:{uuid.uuid4().hex}:"


# Every standalone suite runs with auto-pipelining on (the default) and off.
PIPELINING = pytest.mark.parametrize(
    "auto_pipeline", [True, False], ids=["auto_pipeline", "direct"], scope="class"
)


@PIPELINING
class TestFakeRedisBackend(StateBackendContract, ExpiryContract, ErasureContract):
    @pytest_asyncio.fixture
    async def backend(self, auto_pipeline: bool) -> AsyncIterator[RedisBackend]:
        client = fakeredis.FakeAsyncRedis()
        backend = RedisBackend(client, key_prefix=_prefix(), auto_pipeline=auto_pipeline)
        yield backend
        await backend.aclose()
        await client.aclose()


@PIPELINING
@on(REDIS)
class TestRealRedisBackend(StateBackendContract, ExpiryContract, ErasureContract):
    @pytest_asyncio.fixture
    async def backend(
        self, request: pytest.FixtureRequest, auto_pipeline: bool
    ) -> AsyncIterator[StateBackend]:
        async with open_target(REDIS, request, auto_pipeline=auto_pipeline) as backend:
            yield backend


@on(REDIS_CLUSTER)
class TestRedisClusterBackend(StateBackendContract, ExpiryContract, ErasureContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(REDIS_CLUSTER, request) as backend:
            yield backend


@PIPELINING
@on(REDIS_SENTINEL)
class TestRedisSentinelBackend(StateBackendContract, ExpiryContract, ErasureContract):
    @pytest_asyncio.fixture
    async def backend(
        self, request: pytest.FixtureRequest, auto_pipeline: bool
    ) -> AsyncIterator[StateBackend]:
        async with open_target(REDIS_SENTINEL, request, auto_pipeline=auto_pipeline) as backend:
            yield backend
