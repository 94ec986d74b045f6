"""The raw asyncpg baseline: hand-written SQL on a table laid out exactly like statekit's.

``INSERT ... ON CONFLICT DO UPDATE`` for a set (same columns, same version bump), one
``SELECT`` for a get, one ``scope_key = ANY($1)`` for a snapshot and an index range for a
listing, through an asyncpg pool as large as statekit's SQL pool. Prepared statements
come from asyncpg's statement cache. No validation, no policy, no error mapping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import asyncpg
from sqlalchemy import MetaData
from sqlalchemy.engine import make_url

from benchmarks.workload import RAW_DRIVER, Identity
from statekit.backends.sql import state_table


def asyncpg_dsn(url: str) -> str:
    """The libpq-style DSN asyncpg takes, from a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _context(who: Identity, scope: str) -> tuple[str | None, ...]:
    event = who.event
    actor, subject = event.actor, event.subject
    return (
        who.runner.id,
        who.binding.binding_id,
        scope,
        event.bot_id,
        event.workspace_id,
        event.conversation_id,
        event.thread_id,
        actor.actor_type if actor else None,
        actor.actor_id if actor else None,
        subject.subject_type if subject else None,
        subject.subject_id if subject else None,
    )


class RawAsyncpgContender:
    label = "raw asyncpg"
    family, tag = RAW_DRIVER, "asyncpg"

    def __init__(self, pool: asyncpg.Pool, schema: str, table_name: str = "raw_state") -> None:
        self._pool = pool
        #: statekit's own table layout under another name; created by the caller.
        self.table = state_table(MetaData(), table_name, schema)
        t = f'"{schema}"."{table_name}"'
        self._upsert = (
            f"INSERT INTO {t} (runner_id, binding_identity, scope, bot_id, workspace_id,"
            " conversation_id, thread_id, actor_type, actor_id, subject_type, subject_id,"
            " scope_key, state_key, value_json, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)"
            " ON CONFLICT (scope_key, state_key) DO UPDATE SET value_json = EXCLUDED.value_json,"
            f" updated_at = EXCLUDED.updated_at, version = {t}.version + 1 RETURNING version"
        )
        self._get = f"SELECT value_json FROM {t} WHERE scope_key = $1 AND state_key = $2"
        self._snapshot = (
            f"SELECT scope_key, state_key, value_json FROM {t} WHERE scope_key = ANY($1::text[])"
        )
        self._list = (
            f"SELECT state_key FROM {t} WHERE scope_key = $1 AND state_key >= $2"
            " AND state_key < $3 ORDER BY state_key LIMIT 101"
        )

    @classmethod
    async def open(cls, url: str, schema: str, pool_size: int) -> RawAsyncpgContender:
        """A contender with a pool of at most ``pool_size`` connections."""
        pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=pool_size)
        return cls(pool, schema)

    def _row(self, who: Identity, scope: str, key: str, value: Any) -> tuple[Any, ...]:
        value_json = json.dumps(value, separators=(",", ":"))
        now = datetime.now(timezone.utc)
        return (*_context(who, scope), who.scope_keys[scope], key, value_json, now)

    async def fill(self, who: Identity, scope: str, entries: Mapping[str, Any]) -> None:
        rows = [self._row(who, scope, k, v) for k, v in entries.items()]
        await self._pool.executemany(self._upsert, rows)

    async def set(self, who: Identity, scope: str, key: str, value: Any) -> None:
        await self._pool.fetchval(self._upsert, *self._row(who, scope, key, value))

    async def get(self, who: Identity, scope: str, key: str) -> Any:
        value_json = await self._pool.fetchval(self._get, who.scope_keys[scope], key)
        return None if value_json is None else json.loads(value_json)

    async def snapshot(self, who: Identity) -> dict[str, dict[str, Any]]:
        by_key: dict[str, dict[str, Any]] = {k: {} for k in who.scope_keys.values()}
        for scope_key, state_key, value_json in await self._pool.fetch(
            self._snapshot, list(by_key)
        ):
            by_key[scope_key][state_key] = json.loads(value_json)
        return {scope: by_key[k] for scope, k in who.scope_keys.items()}

    async def list(self, who: Identity, scope: str, prefix: str) -> tuple[list[str], bool]:
        high = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the workload's prefixes are ASCII
        rows = await self._pool.fetch(self._list, who.scope_keys[scope], prefix, high)
        keys = [row[0] for row in rows]
        return keys[:100], len(keys) > 100

    async def aclose(self) -> None:
        await self._pool.close()  # the table goes with the benchmark's schema
