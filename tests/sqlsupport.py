"""Plumbing shared by the SQL test modules: the dialects they run on, a private PostgreSQL
schema per session or per test, the original store's table, and statements run on a
connection of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from services import service_url
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# The original store's table, as the baseline benchmark creates it, for the SQL tests.
from benchmarks.original import original_table as original_table
from statekit.backends.sql import SQLBackend

#: The dialects of a test parametrized over both, each with its marker.
DIALECTS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


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


@contextlib.asynccontextmanager
async def row_locked(backend: SQLBackend, state_key: str) -> AsyncIterator[AsyncConnection]:
    """A connection of its own (PostgreSQL) holding the row lock of ``state_key`` in
    ``backend``'s table until the block ends or it calls ``rollback()``."""
    locker = create_async_engine(postgres_url())
    try:
        async with locker.connect() as conn:
            await conn.execute(
                text(
                    f"SELECT 1 FROM {backend.table_fullname} "
                    f"WHERE state_key = '{state_key}' FOR UPDATE"
                )
            )
            yield conn
    finally:
        await locker.dispose()


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


@contextlib.asynccontextmanager
async def tables_place(
    dialect: str, tmp_path: Path, filename: str = "host.db"
) -> AsyncIterator[tuple[str, str | None]]:
    """``(url, schema)`` where a test creates its tables: a SQLite file in ``tmp_path``
    (no schema), or a PostgreSQL schema of the test's own, created here and dropped with
    everything in it afterwards."""
    if dialect == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / filename}", None
        return
    url, schema = postgres_url(), new_schema_name()
    await execute(url, f'CREATE SCHEMA "{schema}"')
    try:
        yield url, schema
    finally:
        await execute(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class Place:
    """Where a test's tables go: a SQLite file or a private PostgreSQL schema, with the
    engines the test opened there (disposed by :func:`place_of`)."""

    url: str
    schema: str | None
    engines: list[AsyncEngine] = field(default_factory=list)

    @property
    def postgres(self) -> bool:
        return self.schema is not None

    def engine(self, **connect_args: Any) -> AsyncEngine:
        engine = create_async_engine(self.url, connect_args=connect_args)
        self.engines.append(engine)
        return engine

    def backend(self, engine: AsyncEngine | None = None, **options: Any) -> SQLBackend:
        """A backend in this place, on ``engine`` or on a new engine of its own."""
        return SQLBackend(engine or self.engine(), schema=self.schema, **options)

    def name(self, table: str) -> str:
        """``table`` as a statement names it here (schema-qualified on PostgreSQL)."""
        return table if self.schema is None else f'"{self.schema}".{table}'


@contextlib.asynccontextmanager
async def place_of(dialect: str, tmp_path: Path, filename: str = "host.db") -> AsyncIterator[Place]:
    """A :class:`Place` for ``dialect`` (see :func:`tables_place`), its engines disposed
    and its schema dropped afterwards."""
    async with tables_place(dialect, tmp_path, filename) as (url, schema):
        place = Place(url, schema)
        try:
            yield place
        finally:
            for engine in place.engines:
                await engine.dispose()
