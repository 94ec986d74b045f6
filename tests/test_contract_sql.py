"""The contract suite on the SQL backend: SQLite (a file and :memory:) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine
from sqlsupport import postgres_url, private_schema

from statekit.backends.sql import SQLBackend
from statekit.testing import StateBackendContract


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    yield from private_schema()


@pytest.mark.sqlite
class TestSQLiteFile(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLBackend]:
        backend = SQLBackend.from_url(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
        yield backend
        await backend.aclose()


@pytest.mark.sqlite
class TestSQLiteHostEngine(StateBackendContract):
    """A host's own engine: its connections stay in sqlite3's default transaction mode."""

    @pytest_asyncio.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLBackend]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'host.db'}")
        backend = SQLBackend(engine)
        yield backend
        await backend.aclose()
        await engine.dispose()


@pytest.mark.sqlite
class TestSQLiteMemory(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[SQLBackend]:
        backend = SQLBackend.from_url("sqlite+aiosqlite:///:memory:")
        yield backend
        await backend.aclose()


@pytest.mark.postgres
class TestPostgres(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, pg_schema: str) -> AsyncIterator[SQLBackend]:
        backend = SQLBackend.from_url(postgres_url(), schema=pg_schema)
        yield backend
        await backend.clear()
        await backend.aclose()
