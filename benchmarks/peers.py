"""The peers of each backend: other libraries doing the same job, opened side by side.

LangGraph's stores (``peers_langgraph.py``) and py-key-value-aio's (``peers_kv.py``) come
with the ``bench`` extra; :func:`missing_modules` says whether it is installed, and the
openers import the peer modules only when called, so a run without the extra still
measures statekit and its baselines. Each opener yields the backend's peers and removes
everything they wrote when it exits: Redis keys under the run's prefix, a PostgreSQL
schema of their own (dropped), files in the run's SQLite directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from benchmarks.raw_asyncpg import asyncpg_dsn
from benchmarks.workload import Contender

#: What the peers import: the ``bench`` extra.
PEER_MODULES = (
    "langgraph.store.postgres",
    "langgraph.store.sqlite",
    "psycopg_pool",
    "key_value.aio.stores.redis",
    "key_value.aio.stores.postgresql",
    "key_value.aio.stores.disk",
    "diskcache",
)
INSTALL_HINT = "pip install 'statekit[bench]'"


def missing_modules() -> list[str]:
    """The peer modules that cannot be imported here (empty: the extra is installed)."""
    missing = []
    for name in PEER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


@contextlib.asynccontextmanager
async def redis_peers(url: str, prefix: str) -> AsyncIterator[list[Contender]]:
    """py-key-value's ``RedisStore``, its keys under ``prefix``."""
    from benchmarks import peers_kv

    async with contextlib.AsyncExitStack() as stack:
        store = await peers_kv.open_redis_store(url, prefix)
        stack.push_async_callback(store.aclose)
        yield [store]


@contextlib.asynccontextmanager
async def postgres_peers(url: str, run_id: str, pool_size: int) -> AsyncIterator[list[Contender]]:
    """LangGraph's ``AsyncPostgresStore`` and py-key-value's ``PostgreSQLStore``, in a
    schema ``bench_peer_<run_id>`` created here and dropped on exit."""
    from benchmarks import peers_kv, peers_langgraph

    schema = f"bench_peer_{run_id}"
    admin = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        async with contextlib.AsyncExitStack() as stack:
            opened: list[Contender] = []
            langgraph = await peers_langgraph.open_postgres_store(url, schema, pool_size)
            stack.push_async_callback(langgraph.aclose)
            opened.append(langgraph)
            table = f"kv_bench_{run_id}"
            kv = await peers_kv.open_postgres_store(url, schema, table, pool_size)
            stack.push_async_callback(kv.aclose)
            opened.append(kv)
            yield opened
    finally:
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def sqlite_peers(directory: Path) -> AsyncIterator[list[Contender]]:
    """LangGraph's ``AsyncSqliteStore`` in WAL mode and with the default journal, each on
    its own file, and py-key-value's ``DiskStore``, all under ``directory``."""
    from benchmarks import peers_kv, peers_langgraph

    async with contextlib.AsyncExitStack() as stack:
        opened: list[Contender] = []
        for wal, name in ((True, "langgraph-wal.db"), (False, "langgraph-journal.db")):
            store = await peers_langgraph.open_sqlite_store(directory / name, wal=wal)
            stack.push_async_callback(store.aclose)
            opened.append(store)
        disk = await peers_kv.open_disk_store(directory / "diskstore")
        stack.push_async_callback(disk.aclose)
        opened.append(disk)
        yield opened
