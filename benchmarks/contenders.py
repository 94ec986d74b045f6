"""Opening every contender of one backend on its server, and removing all they wrote.

Each opener yields a :class:`BackendRun`: statekit built through its public API with its
default options, plus the baselines, each in storage of its own on the same server. Redis
keys live under a unique prefix and are deleted afterwards; PostgreSQL tables live in a
schema created for the run and dropped afterwards; SQLite uses a file in a fresh directory
(under ``--sqlite-dir`` if given) that is removed afterwards.

With ``peers=True`` (the default) the backend's peers (``peers.py``) are baselines too,
after the others, if the ``bench`` extra is installed; without it a line says they are
skipped.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks import peers as peer_openers
from benchmarks.matrix import DATABASE_FILE, SQLITE
from benchmarks.original import OriginalContender
from benchmarks.raw_asyncpg import RawAsyncpgContender
from benchmarks.raw_redis import RawRedisContender
from benchmarks.workload import Contender, StatekitContender
from statekit import StateStore, connect
from statekit.backends.sql import SQLOptions

SQL_DEFAULTS = SQLOptions.model_validate({})
#: statekit's default SQL pool (pool_size + max_overflow): the baselines get as many.
SQL_POOL = SQL_DEFAULTS.pool_size + SQL_DEFAULTS.max_overflow


@dataclass
class BackendRun:
    """The contenders of one backend. ``statekit`` are the figures under test (the first
    with default options), ``baselines`` what they are compared with; ``point_only``
    statekit variants are timed for set and get only."""

    name: str
    server: str
    where: str
    statekit: list[Contender]
    baselines: list[Contender]
    point_only: list[Contender] = field(default_factory=list)

    @property
    def everyone(self) -> list[Contender]:
        return [*self.statekit, *self.point_only, *self.baselines]


async def _peers(
    stack: contextlib.AsyncExitStack,
    wanted: bool,
    opener: Callable[[], contextlib.AbstractAsyncContextManager[list[Contender]]],
) -> list[Contender]:
    """The backend's peers, closed with ``stack``; none if not ``wanted`` or if the
    ``bench`` extra is missing (then a line on stderr says so)."""
    if not wanted:
        return []
    missing = peer_openers.missing_modules()
    if missing:
        print(
            f"  peers skipped: the bench extra is not installed (no {', '.join(missing)}); "
            f"{peer_openers.INSTALL_HINT}",
            file=sys.stderr,
            flush=True,
        )
        return []
    return await stack.enter_async_context(opener())


async def _server_version(store: StateStore) -> str:
    return (await store.describe()).server_version


async def _where(store: StateStore) -> str:
    """The store's masked URL and namespace (key prefix or table), from ``describe()``."""
    info = await store.describe()
    return f"{info.url}, {info.namespace}"


@contextlib.asynccontextmanager
async def open_redis(url: str, peers: bool = True) -> AsyncIterator[BackendRun]:
    prefix = f"statekit-bench-{uuid.uuid4().hex[:12]}"
    store = connect(url, key_prefix=f"{prefix}:")
    # The same keys without auto-pipelining, with a pool large enough that 64 callers
    # measure the direct path rather than waits for a connection.
    direct = connect(url, key_prefix=f"{prefix}:", auto_pipeline=False, pool_size=64)
    opened: list[Contender] = [
        StatekitContender(store),
        StatekitContender(direct, "statekit, auto_pipeline off"),
        RawRedisContender(url, key_prefix=f"{prefix}-raw:"),
    ]
    try:
        async with contextlib.AsyncExitStack() as stack:
            found = await _peers(
                stack, peers, lambda: peer_openers.redis_peers(url, f"{prefix}-kv:")
            )
            yield BackendRun(
                name="redis",
                server=f"Redis {await _server_version(store)}",
                where=await _where(store),
                statekit=opened[:1],
                point_only=opened[1:2],
                baselines=[*opened[2:], *found],
            )
    finally:
        for contender in opened:
            await contender.aclose()


@contextlib.asynccontextmanager
async def open_postgres(url: str, peers: bool = True) -> AsyncIterator[BackendRun]:
    run_id = uuid.uuid4().hex[:12]
    schema = f"statekit_bench_{run_id}"
    admin = create_async_engine(url)  # creates and drops the run's schema
    opened: list[Contender] = []
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        store = connect(url, schema=schema)
        opened.append(StatekitContender(store))
        original_engine = create_async_engine(
            url, pool_size=SQL_DEFAULTS.pool_size, max_overflow=SQL_DEFAULTS.max_overflow
        )
        opened.append(await OriginalContender.open(original_engine, schema))
        raw = await RawAsyncpgContender.open(url, schema, SQL_POOL)
        opened.append(raw)
        async with admin.begin() as conn:
            await conn.run_sync(raw.table.metadata.create_all)
        async with contextlib.AsyncExitStack() as stack:
            found = await _peers(
                stack, peers, lambda: peer_openers.postgres_peers(url, run_id, SQL_POOL)
            )
            yield BackendRun(
                name="postgres",
                server=f"PostgreSQL {await _server_version(store)}",
                where=await _where(store),
                statekit=opened[:1],
                baselines=[*opened[1:], *found],
            )
    finally:
        for contender in opened:
            await contender.aclose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


@contextlib.asynccontextmanager
async def open_sqlite(parent: str | None = None, peers: bool = True) -> AsyncIterator[BackendRun]:
    """SQLite in a new directory under ``parent`` (default: the system's temporary one)."""
    directory = Path(tempfile.mkdtemp(prefix="statekit-bench-", dir=parent))
    database = directory / DATABASE_FILE
    url = SQLITE.url_in(directory)
    opened: list[Contender] = []
    try:
        store = connect(url)
        opened.append(StatekitContender(store))
        await _server_version(store)  # creates the file in WAL mode, as statekit sets it up
        original_engine = create_async_engine(
            url, pool_size=SQL_DEFAULTS.pool_size, max_overflow=SQL_DEFAULTS.max_overflow
        )
        opened.append(await OriginalContender.open(original_engine, None))
        async with contextlib.AsyncExitStack() as stack:
            found = await _peers(stack, peers, lambda: peer_openers.sqlite_peers(directory))
            yield BackendRun(
                name="sqlite",
                server=f"SQLite {await _server_version(store)}",
                where=str(database),
                statekit=opened[:1],
                baselines=[*opened[1:], *found],
            )
    finally:
        for contender in opened:
            await contender.aclose()
        shutil.rmtree(directory, ignore_errors=True)
