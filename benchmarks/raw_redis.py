"""The raw redis-py baseline: the minimal commands for the same job, one call per operation.

One hash per scope (``HSET`` / ``HGET``, a pipelined ``HGETALL`` per scope for a snapshot,
``HSCAN MATCH`` for a listing), values JSON-encoded and decoded like statekit's, through
``redis.asyncio`` with its default connection pool (a connection per concurrent caller).
No validation, no versions, no context, no timeouts: the floor statekit is measured against.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from typing import Any

import redis.asyncio as aioredis

from benchmarks.workload import RAW_DRIVER, Identity


async def _reply(command: Awaitable[Any] | Any) -> Any:
    """redis-py types its commands for sync and async clients alike ("awaitable or value")."""
    return await command


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RawRedisContender:
    label = "raw redis-py"
    family, tag = RAW_DRIVER, "redis-py"

    def __init__(self, url: str, key_prefix: str) -> None:
        self._client = aioredis.Redis.from_url(url)
        self._prefix = key_prefix

    def _hash(self, scope_key: str) -> str:
        return f"{self._prefix}{{{scope_key}}}"

    async def fill(self, who: Identity, scope: str, entries: Mapping[str, Any]) -> None:
        mapping = {k: json.dumps(v, separators=(",", ":")) for k, v in entries.items()}
        await _reply(self._client.hset(self._hash(who.scope_keys[scope]), mapping=mapping))

    async def set(self, who: Identity, scope: str, key: str, value: Any) -> None:
        value_json = json.dumps(value, separators=(",", ":"))
        await _reply(self._client.hset(self._hash(who.scope_keys[scope]), key, value_json))

    async def get(self, who: Identity, scope: str, key: str) -> Any:
        raw = await _reply(self._client.hget(self._hash(who.scope_keys[scope]), key))
        return None if raw is None else json.loads(raw)

    async def snapshot(self, who: Identity) -> dict[str, dict[str, Any]]:
        async with self._client.pipeline(transaction=False) as pipe:
            for scope_key in who.scope_keys.values():
                pipe.hgetall(self._hash(scope_key))
            replies = await pipe.execute()
        return {
            scope: {k.decode(): json.loads(v) for k, v in reply.items()}
            for scope, reply in zip(who.scope_keys, replies, strict=True)
        }

    async def list(self, who: Identity, scope: str, prefix: str) -> tuple[list[str], bool]:
        # HSCAN walks the whole hash; only matching fields (and their values) come back.
        fields = [
            field.decode()
            async for field, _ in self._client.hscan_iter(
                self._hash(who.scope_keys[scope]), match=_escape_glob(prefix) + "*", count=1000
            )
        ]
        keys = sorted(set(fields))
        return keys[:100], len(keys) > 100

    async def aclose(self) -> None:
        pattern = _escape_glob(self._prefix) + "*"
        keys = [key async for key in self._client.scan_iter(match=pattern, count=500)]
        for start in range(0, len(keys), 500):
            await self._client.unlink(*keys[start : start + 500])
        await self._client.aclose()
