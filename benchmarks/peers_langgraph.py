"""LangGraph's stores as peers: ``AsyncPostgresStore`` and ``AsyncSqliteStore``.

Both are ``AsyncBatchedBaseStore``: every ``aget``/``aput``/``asearch`` goes into a queue
that one background task drains, sending everything queued at that moment as one batch
(``abatch``) and the next batch only when that one has returned. A scope is a namespace
of one label, ``(scope_key,)``; a set is ``aput``, a get ``aget`` (its ``Item.value``), a
snapshot the four scopes' ``asearch(namespace, limit=...)`` started together, so they go
in one batch. LangGraph has no key-prefix listing (a search filters on values and orders
by ``updated_at``), so ``list`` is recorded as not available.

The PostgreSQL store's tables are unqualified (``store``, ``store_migrations``): each run
gives it a schema of its own through ``search_path`` on its connections. Its ``setup()``
builds its prefix index with ``CREATE INDEX CONCURRENTLY``, which waits for every
transaction open in the database: on a shared server that can take minutes, so the
benchmark's subclass builds the same index on the still empty table without
``CONCURRENTLY`` (same schema, nothing timed depends on it). The SQLite store
sets no pragmas: the benchmark opens its connection itself, in WAL mode with
``synchronous=FULL`` (statekit's settings) for the main figure, and with SQLite's defaults
(rollback journal, ``synchronous=FULL``) on a file of its own for the second one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.store.base import PutOp
from langgraph.store.base.batch import AsyncBatchedBaseStore
from langgraph.store.postgres import AsyncPostgresStore
from langgraph.store.sqlite import AsyncSqliteStore

from benchmarks.raw_asyncpg import asyncpg_dsn
from benchmarks.workload import FILL_BATCH, LANGGRAPH, Identity

#: ``asearch`` limit of a snapshot: more entries than the suite puts in any scope.
SNAPSHOT_LIMIT = 100_000
NO_LISTING = "no key-prefix listing (search filters values, orders by updated_at)"


class _PostgresStore(AsyncPostgresStore):
    """``AsyncPostgresStore`` whose migrations build their indexes without
    ``CONCURRENTLY`` (see the module's docstring)."""

    MIGRATIONS = tuple(
        sql.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX")
        for sql in AsyncPostgresStore.MIGRATIONS
    )


class LangGraphContender:
    """A LangGraph store behind the benchmark's contender interface."""

    family = LANGGRAPH
    unavailable: Mapping[str, str] = {"list": NO_LISTING}

    def __init__(
        self, store: AsyncBatchedBaseStore, label: str, tag: str, stack: contextlib.AsyncExitStack
    ) -> None:
        self.store = store
        self.label = label
        self.tag = tag
        self._stack = stack

    async def fill(self, who: Identity, scope: str, entries: Mapping[str, Any]) -> None:
        namespace = (who.scope_keys[scope],)
        items = list(entries.items())
        for start in range(0, len(items), FILL_BATCH):
            chunk = items[start : start + FILL_BATCH]
            await self.store.abatch([PutOp(namespace, key, value) for key, value in chunk])

    async def set(self, who: Identity, scope: str, key: str, value: Any) -> None:
        await self.store.aput((who.scope_keys[scope],), key, value)

    async def get(self, who: Identity, scope: str, key: str) -> Any:
        item = await self.store.aget((who.scope_keys[scope],), key)
        return None if item is None else item.value

    async def snapshot(self, who: Identity) -> dict[str, dict[str, Any]]:
        found = await asyncio.gather(
            *(self.store.asearch((k,), limit=SNAPSHOT_LIMIT) for k in who.scope_keys.values())
        )
        return {
            scope: {item.key: item.value for item in items}
            for scope, items in zip(who.scope_keys, found, strict=True)
        }

    async def list(self, who: Identity, scope: str, prefix: str) -> tuple[list[str], bool]:
        raise NotImplementedError(NO_LISTING)

    async def aclose(self) -> None:
        await self._stack.aclose()  # its tables go with the run's schema or directory


async def open_postgres_store(url: str, schema: str, pool_size: int) -> LangGraphContender:
    """``AsyncPostgresStore`` on a psycopg pool of ``pool_size`` whose connections use
    ``schema`` (which must exist); ``setup()`` creates its tables there."""
    stack = contextlib.AsyncExitStack()
    try:
        store = await stack.enter_async_context(
            _PostgresStore.from_conn_string(
                asyncpg_dsn(url),
                pool_config={
                    "min_size": 1,
                    "max_size": pool_size,
                    "kwargs": {"options": f"-c search_path={schema}"},
                },
            )
        )
        await store.setup()
    except BaseException:
        await stack.aclose()
        raise
    return LangGraphContender(store, "LangGraph AsyncPostgresStore", "AsyncPostgresStore", stack)


async def open_sqlite_store(database: Path, *, wal: bool) -> LangGraphContender:
    """``AsyncSqliteStore`` on one aiosqlite connection to ``database``: in WAL mode with
    ``synchronous=FULL`` if ``wal``, else with SQLite's default journal and settings."""
    stack = contextlib.AsyncExitStack()
    try:
        conn = await stack.enter_async_context(
            aiosqlite.connect(str(database), isolation_level=None)
        )
        if wal:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=FULL")
        store = AsyncSqliteStore(conn)
        await store.setup()
    except BaseException:
        await stack.aclose()
        raise
    tag = "WAL" if wal else "default journal"
    return LangGraphContender(store, f"LangGraph AsyncSqliteStore ({tag})", tag, stack)
