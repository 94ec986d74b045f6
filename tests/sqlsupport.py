"""Plumbing shared by the SQL test modules: a private PostgreSQL schema per session, the
original store's table, and statements run on a connection of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

from services import service_url
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
    text,
)
from sqlalchemy.ext.asyncio import create_async_engine


def new_schema_name() -> str:
    return f"statekit_test_{uuid.uuid4().hex[:8]}"


def postgres_url() -> str:
    return service_url("STATEKIT_POSTGRES_URL")


async def execute(url: str, *statements: str) -> int:
    """Run ``statements`` in one transaction on a short-lived engine of the test's own; the
    number of rows the last one returned (0 for a statement that returns none)."""
    engine = create_async_engine(url)
    rows = 0
    try:
        async with engine.begin() as conn:
            for statement in statements:
                result = await conn.execute(text(statement))
                rows = len(result.all()) if result.returns_rows else 0
    finally:
        await engine.dispose()
    return rows


async def terminate_connections(application_name: str) -> int:
    """Terminate every PostgreSQL connection opened as ``application_name`` (as an
    administrator or a failover would); how many there were."""
    return await execute(
        postgres_url(),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE application_name = '{application_name}'",
    )


async def until_lock_waits(application_name: str, *, waiting: bool) -> None:
    """Return once a PostgreSQL session of ``application_name`` waits for a lock
    (``waiting``) or none does; fail after ten seconds."""
    query = (
        "SELECT pid FROM pg_stat_activity "
        f"WHERE application_name = '{application_name}' AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        if bool(await execute(postgres_url(), query)) == waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"sessions of {application_name} never {'began' if waiting else 'ended'} waiting for a lock"
    )


def private_schema() -> Iterator[str]:
    """A schema name no other run uses; dropped with everything in it at the end."""
    url = postgres_url()
    name = new_schema_name()
    yield name
    asyncio.run(execute(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


#: The context columns of the original store's rows, after runner_id, binding_identity, scope.
ORIGINAL_CONTEXT = (
    "bot_id",
    "workspace_id",
    "conversation_id",
    "thread_id",
    "actor_type",
    "actor_id",
    "subject_type",
    "subject_id",
)


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
        *(Column(field, String(255), nullable=True) for field in ORIGINAL_CONTEXT),
        Column("created_at", DateTime(timezone=False), nullable=False),
        Column("updated_at", DateTime(timezone=False), nullable=False),
        UniqueConstraint("scope_key", "state_key", name=f"uq_{name}_scope_key_state_key"),
        schema=schema,
    )
