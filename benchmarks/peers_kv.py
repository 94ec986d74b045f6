"""py-key-value-aio's stores as peers: ``RedisStore``, ``PostgreSQLStore`` and ``DiskStore``.

A scope is a collection (``<prefix><scope_key>``), a set ``put(key, value, collection=)``,
a get ``get(key, collection=)``. Every value is wrapped in the library's JSON envelope
(``{"value": ..., "created_at": ...}``) and must be a dict: the workload's value is one.
Each public call is checked at run time by beartype.

- ``RedisStore`` keeps ``collection::key`` as a plain string (``SET``/``GET``/``MGET``);
  ``keys(collection)`` walks the database with ``SCAN MATCH collection::*`` and returns
  at most 10,000 keys. A snapshot is, for each of the four scopes at once, ``keys()`` then
  ``get_many()`` (one ``MGET``); a listing is ``keys()``, filtered by prefix and sorted
  here.
- ``PostgreSQLStore`` has one table (``collection, key, value JSONB, ...``), one upsert per
  put and one ``SELECT`` per get, on the asyncpg pool it is given. It lists collections,
  not keys: snapshot and listing are not available.
- ``DiskStore`` is a ``diskcache.Cache``: SQLite called on the event loop itself, one
  transaction per put. diskcache's default is ``synchronous=NORMAL`` (no fsync per commit
  in WAL mode); the benchmark passes a cache with ``sqlite_synchronous=2`` (FULL, an
  fsync per commit, like statekit). No key enumeration: snapshot and listing are not
  available.

None of them is ever asked to ``destroy()`` (``RedisStore``'s is ``FLUSHDB``): each run
removes exactly what it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg
import diskcache
import redis.asyncio as aioredis
from key_value.aio.stores.base import BaseStore
from key_value.aio.stores.disk import DiskStore
from key_value.aio.stores.postgresql import PostgreSQLStore
from key_value.aio.stores.redis import RedisStore

from benchmarks.raw_asyncpg import asyncpg_dsn
from benchmarks.workload import KEY_VALUE, Identity

#: The most keys ``RedisStore.keys()`` returns (its ``PAGE_LIMIT``).
KEYS_LIMIT = 10_000
NO_KEYS = "no key enumeration (the store lists collections, not keys)"


class KeyValueContender:
    """A py-key-value store for set and get; snapshot and listing not available."""

    family = KEY_VALUE
    unavailable: Mapping[str, str] = {"snapshot": NO_KEYS, "list": NO_KEYS}

    def __init__(
        self, store: BaseStore, label: str, prefix: str, stack: contextlib.AsyncExitStack
    ) -> None:
        self.store = store
        self.label = label
        self.tag = label.removeprefix("py-key-value ")
        self._prefix = prefix
        self._stack = stack

    def collection(self, who: Identity, scope: str) -> str:
        return f"{self._prefix}{who.scope_keys[scope]}"

    async def fill(self, who: Identity, scope: str, entries: Mapping[str, Any]) -> None:
        await self.store.put_many(
            list(entries), list(entries.values()), collection=self.collection(who, scope)
        )

    async def set(self, who: Identity, scope: str, key: str, value: Any) -> None:
        await self.store.put(key, value, collection=self.collection(who, scope))

    async def get(self, who: Identity, scope: str, key: str) -> Any:
        return await self.store.get(key, collection=self.collection(who, scope))

    async def snapshot(self, who: Identity) -> dict[str, dict[str, Any]]:
        raise NotImplementedError(self.unavailable["snapshot"])

    async def list(self, who: Identity, scope: str, prefix: str) -> tuple[list[str], bool]:
        raise NotImplementedError(self.unavailable["list"])

    async def aclose(self) -> None:
        await self._stack.aclose()


class KeyValueRedisContender(KeyValueContender):
    """``RedisStore``, whose ``keys()`` makes snapshot and listing possible."""

    unavailable: Mapping[str, str] = {}

    def __init__(self, store: RedisStore, prefix: str, stack: contextlib.AsyncExitStack) -> None:
        super().__init__(store, "py-key-value RedisStore", prefix, stack)
        self.redis_store = store

    async def _scope(self, collection: str) -> dict[str, Any]:
        keys = await self.redis_store.keys(collection, limit=KEYS_LIMIT)
        values = await self.store.get_many(keys, collection=collection) if keys else []
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    async def snapshot(self, who: Identity) -> dict[str, dict[str, Any]]:
        found = await asyncio.gather(
            *(self._scope(self.collection(who, s)) for s in who.scope_keys)
        )
        return dict(zip(who.scope_keys, found, strict=True))

    async def list(self, who: Identity, scope: str, prefix: str) -> tuple[list[str], bool]:
        keys = await self.redis_store.keys(self.collection(who, scope), limit=KEYS_LIMIT)
        matching = sorted(k for k in keys if k.startswith(prefix))
        return matching[:100], len(matching) > 100


def _quietly(make: Any, **options: Any) -> Any:
    """Build a store without the library's "unstable API" ``UserWarning``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return make(**options)


async def _unlink_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        keys = [key async for key in client.scan_iter(match=pattern, count=500)]
        for start in range(0, len(keys), 500):
            await client.unlink(*keys[start : start + 500])
    finally:
        await client.aclose()


async def open_redis_store(url: str, prefix: str) -> KeyValueRedisContender:
    """``RedisStore`` with its own client; its keys start with ``prefix`` and are unlinked
    when it closes."""
    stack = contextlib.AsyncExitStack()
    stack.push_async_callback(_unlink_prefix, url, prefix)
    try:
        store: RedisStore = _quietly(RedisStore, url=url)
        await stack.enter_async_context(store)
    except BaseException:
        await stack.aclose()
        raise
    return KeyValueRedisContender(store, prefix, stack)


async def open_postgres_store(
    url: str, schema: str, table: str, pool_size: int
) -> KeyValueContender:
    """``PostgreSQLStore`` creating ``table`` (a name no other schema has: the store looks
    for it across schemas) in ``schema``, on an asyncpg pool of ``pool_size``."""
    stack = contextlib.AsyncExitStack()
    try:
        pool = await asyncpg.create_pool(
            asyncpg_dsn(url),
            min_size=1,
            max_size=pool_size,
            server_settings={"search_path": schema},
        )
        stack.push_async_callback(pool.close)
        store: PostgreSQLStore = _quietly(PostgreSQLStore, pool=pool, table_name=table)
        await stack.enter_async_context(store)
    except BaseException:
        await stack.aclose()
        raise
    return KeyValueContender(store, "py-key-value PostgreSQLStore", "", stack)


class DiskContender(KeyValueContender):
    """``DiskStore``; its fill runs in one diskcache transaction (untimed)."""

    def __init__(
        self, store: DiskStore, cache: diskcache.Cache, stack: contextlib.AsyncExitStack
    ) -> None:
        super().__init__(store, "py-key-value DiskStore", "", stack)
        self._cache = cache

    async def fill(self, who: Identity, scope: str, entries: Mapping[str, Any]) -> None:
        with self._cache.transact():
            await super().fill(who, scope, entries)


async def open_disk_store(directory: Path) -> DiskContender:
    """``DiskStore`` on a cache in ``directory``: no eviction, ``synchronous=FULL``."""
    stack = contextlib.AsyncExitStack()
    cache = diskcache.Cache(str(directory), eviction_policy="none", sqlite_synchronous=2)
    stack.callback(cache.close)
    try:
        store: DiskStore = _quietly(DiskStore, disk_cache=cache)
        await stack.enter_async_context(store)
    except BaseException:
        await stack.aclose()
        raise
    return DiskContender(store, cache, stack)
