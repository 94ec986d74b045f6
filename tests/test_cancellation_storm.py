"""Thousands of calls cancelled at random points leave a working, consistent store behind.

On every backend (memory, a SQLite file, Redis with and without auto-pipelining,
PostgreSQL) a storm of sets, batch updates, deletes, gets, snapshots and listings is
cancelled at random points (see ``cancellation_storm.py``). Afterwards:

- every read during the storm and the final snapshot agree with the model (each
  cancelled write happened or not, in its place in its key's history);
- no call failed with anything but its cancellation, and none hung;
- the store still works: one more acknowledged write per key is exactly what is read;
- the backend's connections stayed within its pool while the storm ran, and are all
  gone once the store is closed;
- no task is left running, none was destroyed pending, and the event loop reported no
  error that nobody handled.

That last promise is checked last, so that the others are asserted even where it breaks
(issue 12 item 11 found SQLite calls cancelled twice leaving SQLAlchemy's
connection-terminate tasks pending, and PostgreSQL connection attempts cancelled during
their TLS negotiation leaving asyncpg errors that nobody retrieved; both are fixed). On
Redis with auto-pipelining it found a cancelled caller leaving while its write was still
on the wire, so that its next write, sent on another connection, could be applied first;
a caller now leaves once its round trip has ended.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cancellation_storm import StormReport, storm
from redis.asyncio import Redis
from services import service_url
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlsupport import postgres_url, private_schema

import statekit
from statekit import StateStore
from statekit.testing import new_identity

STEPS = 50  # per lane: LANES * STEPS calls per storm
REDIS_POOL = 8
PG_POOL, PG_OVERFLOW = 4, 4
SQLITE_POOL = 4
#: Extra Redis connections tolerated above the pool while calls are being cancelled (one
#: being closed while its replacement opens). PostgreSQL gets none: a cancelled
#: statement's connection keeps its place in the pool until the server has ended it (its
#: backend process leaves pg_stat_activity before the server closes the socket).
MARGIN = 2
#: SQLite's are counted as threads, and a cancelled call's connection is discarded: its
#: thread ends only once the close has run there, while a new connection has its own.
SQLITE_CLOSING = 4


@dataclass
class Target:
    """A store under attack and how to count the connections it holds."""

    store: StateStore
    connections: Callable[[], Awaitable[int]]
    bound: int


async def _no_connections() -> int:
    return 0


def _thread_counter() -> Callable[[], Awaitable[int]]:
    """aiosqlite runs each connection on a thread of its own: threads above today's."""
    baseline = threading.active_count()

    async def count() -> int:
        return threading.active_count() - baseline

    return count


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    yield from private_schema()


def _redis_target(auto_pipeline: bool) -> tuple[Target, Callable[[], Awaitable[None]]]:
    url, name = service_url("STATEKIT_REDIS_URL"), f"statekit-storm-{uuid.uuid4().hex[:8]}"
    prefix = f"statekit-test:{uuid.uuid4().hex}:"
    options: dict[str, Any] = {"key_prefix": prefix, "client_name": name, "pool_size": REDIS_POOL}
    store = statekit.connect(url, auto_pipeline=auto_pipeline, **options)
    probe = Redis.from_url(url)

    async def count() -> int:
        return sum(1 for client in await probe.client_list() if client.get("name") == name)

    async def clean() -> None:
        async with statekit.connect(url, key_prefix=prefix) as store:
            await store.clear_all()
        await probe.aclose()

    return Target(store, count, REDIS_POOL + MARGIN), clean


def _postgres_target(schema: str) -> tuple[Target, Callable[[], Awaitable[None]]]:
    url, name = postgres_url(), f"statekit-storm-{uuid.uuid4().hex[:8]}"
    store = statekit.connect(
        url, schema=schema, application_name=name, pool_size=PG_POOL, max_overflow=PG_OVERFLOW
    )
    probe = create_async_engine(url, pool_size=1)
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")

    async def count() -> int:
        async with probe.connect() as conn:
            return int((await conn.execute(query, {"name": name})).scalar_one())

    return Target(store, count, PG_POOL + PG_OVERFLOW), probe.dispose


async def _nothing() -> None:
    pass


BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite", marks=pytest.mark.sqlite),
    pytest.param("redis-auto_pipeline", id="redis-auto_pipeline", marks=pytest.mark.redis),
    pytest.param("redis-direct", id="redis-direct", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest_asyncio.fixture
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    """A fresh store of the backend named by the test's parameter."""
    name = request.param
    clean: Callable[[], Awaitable[None]] = _nothing
    if name == "memory":
        made = Target(statekit.connect("memory://"), _no_connections, 0)
    elif name == "sqlite":
        counter = _thread_counter()
        url = f"sqlite+aiosqlite:///{tmp_path / 'storm.db'}"
        store = statekit.connect(url, pool_size=SQLITE_POOL)
        made = Target(store, counter, SQLITE_POOL + SQLITE_CLOSING)
    elif name.startswith("redis"):
        made, clean = _redis_target(auto_pipeline=name == "redis-auto_pipeline")
    else:
        made, clean = _postgres_target(request.getfixturevalue("pg_schema"))
    try:
        yield made
    finally:
        await made.store.aclose()
        await clean()


class Watch:
    """While the storm runs: the most connections seen, and what the loop reported
    (tasks destroyed while pending, exceptions never retrieved)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.most = 0
        self.reports: list[str] = []
        self._loop = asyncio.get_running_loop()
        self._handler = self._loop.get_exception_handler()
        self._loop.set_exception_handler(self._report)
        self._stopping = asyncio.Event()
        self._sampler = asyncio.create_task(self._sample())

    def _report(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        subject = context.get("task") or context.get("future") or ""
        self.reports.append(f"{context.get('message')} {subject!r} {context.get('exception')!r}")

    async def _sample(self) -> None:
        while not self._stopping.is_set():
            self.most = max(self.most, await self.target.connections())
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        # Not cancelled: a probe cancelled mid-query would add a cancellation of its own.
        self._stopping.set()
        await self._sampler

    def restore(self) -> None:
        self._loop.set_exception_handler(self._handler)


async def _left_running(bound: float = 3.0) -> list[asyncio.Task[Any]]:
    """The tasks besides this one still running after ``bound`` seconds."""
    current = asyncio.current_task()
    for _ in range(int(bound / 0.05)):
        gc.collect()  # a pending task nobody references is destroyed (and reported) here
        others = [task for task in asyncio.all_tasks() if task is not current]
        if not others:
            return []
        await asyncio.sleep(0.05)
    return others


async def _eventually_zero(count: Callable[[], Awaitable[int]], bound: float = 3.0) -> int:
    for _ in range(int(bound / 0.05)):
        if (n := await count()) == 0:
            return 0
        await asyncio.sleep(0.05)
    return n


async def _still_works(store: StateStore, report: StormReport, ident: Any) -> None:
    """One acknowledged write per key after the storm is exactly what every read shows."""
    final = {key: {"final": key} for key in report.possible}
    for key, value in final.items():
        ok = await store.state_set(
            ident.scope_key(), key, value, ident.runner_id, ident.binding_identity, "conversation"
        )
        assert ok == (True, None)
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    snapshot["conversation"].pop("external.conversation_id")
    assert snapshot["conversation"] == final
    for key, value in final.items():
        assert await store.state_get(ident.scope_key(), key) == value


class TaskLeftPending(AssertionError):
    """A task was left pending when the store was closed (or destroyed while pending)."""


class LoopErrorReported(AssertionError):
    """The event loop reported an error nobody handled (a future's exception never
    retrieved, a protocol callback that failed)."""


def _assert_nothing_left(left: list[asyncio.Task[Any]], reports: list[str]) -> None:
    pending = [r for r in reports if r.startswith("Task was destroyed but it is pending")]
    if left or pending:
        raise TaskLeftPending(
            f"{len(left)} tasks left running, {len(pending)} destroyed pending, "
            f"e.g. {(left or pending)[:2]}"
        )
    others = [r for r in reports if r not in pending]
    if others:
        raise LoopErrorReported(f"{len(others)} loop errors, e.g. {others[:3]}")


async def _storm_and_check(
    target: Target, twice: bool, summary_line: Callable[[str], None]
) -> None:
    ident = new_identity()
    seed = random.randrange(2**32)
    watch = Watch(target)
    try:
        report = await storm(target.store, ident, steps=STEPS, seed=seed, twice=twice)
        await watch.stop()
        summary_line(
            f"cancellation storm (seed {seed}, twice={twice}): {report.summary()}; "
            f"at most {watch.most} connections (bound {target.bound})"
        )
        assert report.errors == [], report.errors[:5]
        assert report.mismatches == [], report.mismatches[:5]
        snapshot = await target.store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        )
        for key in report.possible:
            report.check("final snapshot", key, snapshot["conversation"].get(key))
        assert report.mismatches == [], report.mismatches[:5]
        await _still_works(target.store, report, ident)
        assert watch.most <= target.bound, f"{watch.most} connections, pool {target.bound}"
        await target.store.clear_all()
        await target.store.aclose()
        left = await _left_running()
        assert await _eventually_zero(target.connections) == 0
    finally:
        await watch.stop()
        watch.restore()
    # Last, so that every other promise is checked even where this one is known broken.
    _assert_nothing_left(left, watch.reports)


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
async def test_cancelled_calls_leave_a_consistent_working_store(
    target: Target, summary_line: Callable[[str], None]
) -> None:
    await _storm_and_check(target, twice=False, summary_line=summary_line)


@pytest.mark.parametrize("target", BACKENDS, indirect=True)
async def test_calls_cancelled_twice_leave_a_consistent_working_store(
    target: Target, summary_line: Callable[[str], None]
) -> None:
    await _storm_and_check(target, twice=True, summary_line=summary_line)
