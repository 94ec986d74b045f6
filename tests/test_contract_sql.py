"""The contract suite on the SQL backend: SQLite (a file and :memory:) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from services import on, open_target
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.matrix import POSTGRES, SQLITE, SQLITE_MEMORY
from statekit.backends.base import StateBackend
from statekit.backends.sql import SQLBackend
from statekit.testing import StateBackendContract


@on(SQLITE)
class TestSQLiteFile(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(SQLITE, request) as backend:
            yield backend


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


@on(SQLITE_MEMORY)
class TestSQLiteMemory(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(SQLITE_MEMORY, request) as backend:
            yield backend


@on(POSTGRES)
class TestPostgres(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(POSTGRES, request) as backend:
            yield backend
