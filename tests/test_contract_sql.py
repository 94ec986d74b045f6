"""The contract suite on the SQL backend: SQLite (a file and :memory:) and PostgreSQL, on
statekit's table and on the original store's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from services import on, open_target
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlsupport import execute, new_schema_name, original_table, postgres_url

from benchmarks.matrix import POSTGRES, SQLITE, SQLITE_MEMORY
from statekit.backends.base import Capability, StateBackend
from statekit.backends.sql import SQLBackend, scopes_table, state_table
from statekit.testing import ErasureContract, ExpiryContract, StateBackendContract


@on(SQLITE)
class TestSQLiteFile(StateBackendContract, ExpiryContract, ErasureContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(SQLITE, request) as backend:
            yield backend


@pytest.mark.sqlite
class TestSQLiteHostEngine(StateBackendContract, ExpiryContract, ErasureContract):
    """A host's own engine: its connections stay in sqlite3's default transaction mode."""

    @pytest_asyncio.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLBackend]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'host.db'}")
        backend = SQLBackend(engine)
        yield backend
        await backend.aclose()
        await engine.dispose()


@on(SQLITE)
class TestSQLiteFileReadsOnThread(StateBackendContract, ExpiryContract, ErasureContract):
    """Reads on aiosqlite's thread (``reads_on_loop=False``; a file's default reads on the
    event loop): the same contract."""

    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(SQLITE, request, reads_on_loop=False) as backend:
            yield backend


@pytest.mark.sqlite
class TestSQLiteHostEngineReadsOnLoop(StateBackendContract, ExpiryContract, ErasureContract):
    """A host's engine (sqlite3's default journal and transaction mode), reads on the loop."""

    @pytest_asyncio.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLBackend]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'host.db'}")
        backend = SQLBackend(engine, reads_on_loop=True)
        yield backend
        await backend.aclose()
        await engine.dispose()


@on(SQLITE_MEMORY)
class TestSQLiteMemory(StateBackendContract, ExpiryContract, ErasureContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(SQLITE_MEMORY, request) as backend:
            yield backend


@on(POSTGRES)
class TestPostgres(StateBackendContract, ExpiryContract, ErasureContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(POSTGRES, request) as backend:
            yield backend


async def _original_table_backend(
    url: str, schema: str | None, *, scopes: bool = False, indexes: bool = False
) -> SQLBackend:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        if schema is not None:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(original_table(MetaData(), schema).create)
        if scopes:
            tables = scopes_table(MetaData(), "agent_runner_state", schema)
            await conn.run_sync(tables.create)
        if indexes:  # statekit's table of the same name has the same columns
            for index in state_table(MetaData(), "agent_runner_state", schema).indexes:
                await conn.run_sync(index.create)
    backend = SQLBackend(
        engine, table_name="agent_runner_state", schema=schema, create_schema=False
    )
    # The suite skips by capability before its first call: let the backend see the table
    # (what the SQL page tells hosts to do when they need the capabilities up front).
    await backend.describe()
    assert Capability.VERSIONS not in backend.capabilities
    assert (Capability.EXPIRY in backend.capabilities) is scopes
    assert (Capability.ERASURE in backend.capabilities) is indexes
    return backend


@pytest.mark.sqlite
class TestSQLiteOriginalTable(StateBackendContract, ExpiryContract, ErasureContract):
    """The original store's table as it is: no version column, naive timestamps, a
    nullable value_json."""

    @pytest_asyncio.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLBackend]:
        backend = await _original_table_backend(
            f"sqlite+aiosqlite:///{tmp_path / 'original.db'}", None
        )
        yield backend
        await backend.aclose()
        await backend.engine.dispose()


@pytest.mark.postgres
class TestPostgresOriginalTable(StateBackendContract, ExpiryContract, ErasureContract):
    """The original table on PostgreSQL: also the database's default collation, so
    listings ask for code-point order themselves."""

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[SQLBackend]:
        schema = new_schema_name()
        backend = await _original_table_backend(postgres_url(), schema)
        yield backend
        await backend.aclose()
        await backend.engine.dispose()
        await execute(postgres_url(), f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.sqlite
class TestSQLiteOriginalTableWithExpiry(StateBackendContract, ExpiryContract, ErasureContract):
    """The original store's columns as they are, with the scopes table beside them and the
    identity indexes (what `statekit init` adds, here without the version column)."""

    @pytest_asyncio.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLBackend]:
        backend = await _original_table_backend(
            f"sqlite+aiosqlite:///{tmp_path / 'original.db'}", None, scopes=True, indexes=True
        )
        yield backend
        await backend.aclose()
        await backend.engine.dispose()


@pytest.mark.postgres
class TestPostgresOriginalTableWithExpiry(StateBackendContract, ExpiryContract, ErasureContract):
    """The original table, a scopes table and the identity indexes on PostgreSQL."""

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[SQLBackend]:
        schema = new_schema_name()
        backend = await _original_table_backend(postgres_url(), schema, scopes=True, indexes=True)
        yield backend
        await backend.aclose()
        await backend.engine.dispose()
        await execute(postgres_url(), f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.sqlite
class TestSQLiteOriginalTableWithIndexes(ErasureContract):
    """Erasure on the original store's table with the identity indexes and no scopes
    table: no deadline to check or delete."""

    @pytest_asyncio.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SQLBackend]:
        backend = await _original_table_backend(
            f"sqlite+aiosqlite:///{tmp_path / 'original.db'}", None, indexes=True
        )
        yield backend
        await backend.aclose()
        await backend.engine.dispose()
