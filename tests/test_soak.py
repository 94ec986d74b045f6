"""Soak: 64 concurrent workers mixing every operation, then a full comparison with a model.

The memory run is short and always on. The real-server run (``slow``) drives Redis and
PostgreSQL at the same time for ``STATEKIT_SOAK_SECONDS`` (default 60) and prints the
operation counts and the lost / phantom / wrong counts, which must all be zero, in the
run's terminal summary.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from services import service_url
from soak_workload import SoakReport, soak
from sqlsupport import postgres_url, private_schema

from statekit import MemoryBackend, StateStore
from statekit.backends.redis import RedisBackend
from statekit.backends.sql import SQLBackend


def _assert_clean(name: str, report: SoakReport, summary_line: Callable[[str], None]) -> None:
    summary_line(f"soak on {name}: {report.summary()}")
    assert report.errors == [], report.errors[:5]
    assert (report.lost, report.phantom, report.wrong_value) == (0, 0, 0)
    assert sum(report.operations.values()) > 1000
    assert report.entries > 0


async def test_soak_on_memory_loses_nothing(summary_line: Callable[[str], None]) -> None:
    store = StateStore(MemoryBackend())
    _assert_clean("memory", await soak(store, workers=64, seconds=1.0), summary_line)


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    yield from private_schema()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
async def test_soak_on_redis_and_postgres_loses_nothing(
    pg_schema: str, summary_line: Callable[[str], None]
) -> None:
    seconds = float(os.environ.get("STATEKIT_SOAK_SECONDS", "60"))
    redis = StateStore(
        RedisBackend.from_url(
            service_url("STATEKIT_REDIS_URL"), key_prefix=f"statekit-soak:{uuid.uuid4().hex}:"
        )
    )
    postgres = StateStore(SQLBackend.from_url(postgres_url(), schema=pg_schema, pool_size=16))
    try:
        reports = await asyncio.gather(
            soak(redis, workers=64, seconds=seconds, seed=1),
            soak(postgres, workers=64, seconds=seconds, seed=2),
        )
    finally:
        for store in (redis, postgres):
            await store.clear_all()
            await store.aclose()
    _assert_clean("redis", reports[0], summary_line)
    _assert_clean("postgres", reports[1], summary_line)
