"""Plumbing shared by the SQL test modules: a private PostgreSQL schema per session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

from services import service_url
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


def new_schema_name() -> str:
    return f"statekit_test_{uuid.uuid4().hex[:8]}"


def postgres_url() -> str:
    return service_url("STATEKIT_POSTGRES_URL")


async def execute(url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction on a short-lived engine of the test's own."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def private_schema() -> Iterator[str]:
    """A schema name no other run uses; dropped with everything in it at the end."""
    url = postgres_url()
    name = new_schema_name()
    yield name
    asyncio.run(execute(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
