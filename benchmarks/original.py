"""The original SQL-only store's algorithm, re-implemented as the baseline statekit replaces.

This reproduces ``PersistentStateStore`` from ``shared/seed/persistent_state_store.txt``
(the class statekit generalises), method by method, through SQLAlchemy's async engine:

- ``apply_update_from_event``: policy checks, ``json.dumps``, then in one transaction
  ``SELECT id`` of the entry, followed by an ``UPDATE`` by id or an ``INSERT`` of the row
  with its context: two statements and a ``BEGIN``/``COMMIT`` per set;
- ``build_snapshot_from_event``: one ``SELECT state_key, value_json`` per enabled scope;
- ``state_get``: one ``SELECT value_json``;
- ``state_list``: ``state_key LIKE 'prefix%'`` (unescaped), ``ORDER BY``, ``LIMIT + 1``.

It uses statekit's scope-key helpers, which are the seed's (same v2 key format).
:func:`original_table` is the seed's table from its published column list, with the
unique constraint on ``(scope_key, state_key)`` whose index its queries need, so the
baseline is never slowed down by a missing index; statekit's tests read and write that
table as a host's (:func:`write_entry` is the original's write, shared with them).
"""

from __future__ import annotations

import json
import typing
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.workload import ORIGINAL, Identity, SeedAPIContender
from statekit import (
    VALID_STATE_SCOPES,
    build_state_scope_key,
    get_binding_identity,
    normalize_state_key,
)
from statekit.backends.base import OPTIONAL_CONTEXT_FIELDS
from statekit.scope import event_context_values

MAX_VALUE_JSON_BYTES = 256 * 1024


def _event_context(event: Any) -> dict[str, Any]:
    """The seed's context columns of a row, read from the event as statekit reads them."""
    return dict(zip(OPTIONAL_CONTEXT_FIELDS, event_context_values(event), strict=True))


def original_table(
    metadata: MetaData, schema: str | None = None, name: str = "agent_runner_state"
) -> Table:
    """The original store's ``agent_runner_state`` from its published column list:
    ``scope_key`` of 512, a nullable ``value_json``, ``TIMESTAMP WITHOUT TIME ZONE``
    (naive UTC from ``datetime.utcnow()``), the database's default collation, no
    ``version``."""
    return Table(
        name,
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("runner_id", String(255), nullable=False),
        Column("binding_identity", String(255), nullable=False),
        Column("scope", String(32), nullable=False),
        Column("scope_key", String(512), nullable=False),
        Column("state_key", String(255), nullable=False),
        Column("value_json", Text(), nullable=True),
        *(Column(field, String(255), nullable=True) for field in OPTIONAL_CONTEXT_FIELDS),
        Column("created_at", DateTime(timezone=False), nullable=False),
        Column("updated_at", DateTime(timezone=False), nullable=False),
        UniqueConstraint("scope_key", "state_key", name=f"uq_{name}_scope_key_state_key"),
        schema=schema,
    )


def utcnow() -> datetime:
    """The original's timestamps: naive UTC (``datetime.utcnow()``, deprecated since
    Python 3.12, its warning silenced here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return datetime.utcnow()


async def write_entry(
    engine: AsyncEngine,
    table: Table,
    scope_key: str,
    state_key: str,
    value_json: str | None,
    **row: Any,
) -> None:
    """The original's write of one entry, in one transaction: ``SELECT id`` of the entry,
    then an ``UPDATE`` of its value by id, or an ``INSERT`` of the row with the context
    columns in ``row``; timestamps are naive UTC."""
    t = table
    async with engine.begin() as conn:
        result = await conn.execute(
            select(t.c.id).where(t.c.scope_key == scope_key).where(t.c.state_key == state_key)
        )
        existing = result.first()
        now = utcnow()
        if existing:
            await conn.execute(
                update(t).where(t.c.id == existing.id).values(value_json=value_json, updated_at=now)
            )
        else:
            await conn.execute(
                sqlalchemy.insert(t).values(
                    scope_key=scope_key,
                    state_key=state_key,
                    value_json=value_json,
                    created_at=now,
                    updated_at=now,
                    **row,
                )
            )


class OriginalStore:
    """The seed's ``PersistentStateStore`` (the four methods the benchmark times)."""

    def __init__(self, db_engine: AsyncEngine, table: Table) -> None:
        self._db_engine = db_engine
        self._t = table

    def _check_scope_enabled(self, scope: str, binding: Any) -> bool:
        state_policy = binding.state_policy
        if not state_policy.enable_state:
            return False
        return scope in state_policy.state_scopes

    def _validate_json_value(self, value: Any) -> tuple[str | None, str | None]:
        try:
            json_str = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            return None, f"Value is not JSON-serializable: {e}"
        json_bytes = len(json_str.encode("utf-8"))
        if json_bytes > MAX_VALUE_JSON_BYTES:
            return None, f"Value size {json_bytes} bytes exceeds limit {MAX_VALUE_JSON_BYTES} bytes"
        return json_str, None

    async def build_snapshot_from_event(
        self, event: Any, binding: Any, descriptor: Any
    ) -> dict[str, dict[str, Any]]:
        snapshot: dict[str, dict[str, Any]] = {s: {} for s in VALID_STATE_SCOPES}
        if not binding.state_policy.enable_state:
            return snapshot
        t = self._t
        async with self._db_engine.connect() as conn:
            for scope in VALID_STATE_SCOPES:
                if not self._check_scope_enabled(scope, binding):
                    continue
                scope_key = build_state_scope_key(scope, event, binding, descriptor)
                if not scope_key:
                    continue
                result = await conn.execute(
                    select(t.c.state_key, t.c.value_json).where(t.c.scope_key == scope_key)
                )
                for row in result.fetchall():
                    if row.value_json:
                        try:  # noqa: SIM105 (as the seed wrote it)
                            snapshot[scope][row.state_key] = json.loads(row.value_json)
                        except json.JSONDecodeError:
                            pass
        if self._check_scope_enabled("conversation", binding) and event.conversation_id:  # noqa: SIM102
            if "external.conversation_id" not in snapshot["conversation"]:
                snapshot["conversation"]["external.conversation_id"] = event.conversation_id
        return snapshot

    async def apply_update_from_event(
        self, event: Any, binding: Any, descriptor: Any, scope: str, key: str, value: Any
    ) -> tuple[bool, str | None]:
        if not binding.state_policy.enable_state:
            return False, "State is disabled by binding policy"
        if scope not in VALID_STATE_SCOPES:
            return False, f"Invalid scope: {scope}"
        if not self._check_scope_enabled(scope, binding):
            return False, f'Scope "{scope}" not enabled by binding policy'
        key = normalize_state_key(key)
        scope_key = build_state_scope_key(scope, event, binding, descriptor)
        if not scope_key:
            return False, f'Missing identity for scope "{scope}"'
        value_json, error = self._validate_json_value(value)
        if error:
            return False, error
        await write_entry(
            self._db_engine,
            self._t,
            scope_key,
            key,
            value_json,
            runner_id=descriptor.id,
            binding_identity=get_binding_identity(binding),
            scope=scope,
            **_event_context(event),
        )
        return True, None

    async def state_get(self, scope_key: str, state_key: str) -> typing.Any:
        state_key = normalize_state_key(state_key)
        t = self._t
        async with self._db_engine.connect() as conn:
            result = await conn.execute(
                select(t.c.value_json)
                .where(t.c.scope_key == scope_key)
                .where(t.c.state_key == state_key)
            )
            row = result.first()
            if not row or not row.value_json:
                return None
            try:
                return json.loads(row.value_json)
            except json.JSONDecodeError:
                return None

    async def state_list(
        self, scope_key: str, prefix: str | None = None, limit: int = 100
    ) -> tuple[list[str], bool]:
        limit = min(limit, 100)
        t = self._t
        async with self._db_engine.connect() as conn:
            query = (
                select(t.c.state_key)
                .where(t.c.scope_key == scope_key)
                .order_by(t.c.state_key)
                .limit(limit + 1)
            )
            if prefix:
                prefix = normalize_state_key(prefix)
                query = query.where(t.c.state_key.like(f"{prefix}%"))
            result = await conn.execute(query)
            rows = result.fetchall()
            keys = [row.state_key for row in rows[:limit]]
            return keys, len(rows) > limit


class OriginalContender(SeedAPIContender[OriginalStore]):
    """The original store on its own table, behind the benchmark's contender interface."""

    label = "original"
    family, tag = ORIGINAL, "original"

    def __init__(self, engine: AsyncEngine, table: Table) -> None:
        super().__init__(OriginalStore(engine, table))
        self._engine = engine
        self._table = table

    @classmethod
    async def open(cls, engine: AsyncEngine, schema: str | None) -> OriginalContender:
        """Create the original's table (in ``schema`` on PostgreSQL) on ``engine``."""
        table = original_table(MetaData(), schema, "original_state")
        async with engine.begin() as conn:
            await conn.run_sync(table.metadata.create_all)
        return cls(engine, table)

    async def fill(self, who: Identity, scope: str, entries: Mapping[str, Any]) -> None:
        # Bulk insert for setting up large scopes: not part of the original's algorithm.
        now = utcnow()
        context = _event_context(who.event)
        rows = [
            {
                "runner_id": who.runner.id,
                "binding_identity": get_binding_identity(who.binding),
                "scope": scope,
                "scope_key": who.scope_keys[scope],
                "state_key": key,
                "value_json": json.dumps(value, ensure_ascii=False),
                **context,
                "created_at": now,
                "updated_at": now,
            }
            for key, value in entries.items()
        ]
        async with self._engine.begin() as conn:
            await conn.execute(sqlalchemy.insert(self._table), rows)

    async def aclose(self) -> None:
        await self._engine.dispose()  # its table goes with the benchmark's schema or file
