"""Plumbing shared by the SQL test modules: a private PostgreSQL schema per session, the
original store's table, and statements run on a connection of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

from services import service_url
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

# The original store's table, as the baseline benchmark creates it, for the SQL tests.
from benchmarks.original import original_table as original_table


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


def private_schema() -> Iterator[str]:
    """A schema name no other run uses; dropped with everything in it at the end."""
    url = postgres_url()
    name = new_schema_name()
    yield name
    asyncio.run(execute(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
