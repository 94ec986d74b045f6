"""SQLite reads on the event loop (``reads_on_loop``): where the option applies, that the
reads skip the gate and aiosqlite's thread, what they do when the database is locked or
a read outlasts ``timeout``, and that the backend still moves from loop to loop.

The contract suite runs on such a backend too (``tests/test_contract_sql.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from statekit import connect
from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.sql import SQLBackend, loop_reads
from statekit.errors import ConfigurationError

pytestmark = pytest.mark.sqlite

CTX = ScopeContext("runner-1", "binding-1", "runner")


def _write(key: str, value: str = '"v"', scope: str = "scope-1") -> StateWrite:
    return StateWrite(scope, key, value, CTX)


def _file_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'loop.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:///file:shared?mode=memory&uri=true",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    ],
)
def test_reads_on_loop_is_refused_where_it_cannot_apply(url: str) -> None:
    with pytest.raises(ConfigurationError, match="reads_on_loop"):
        connect(url, reads_on_loop=True)


def test_reads_on_loop_is_read_from_the_url(tmp_path: Path) -> None:
    backend = SQLBackend.from_url(_file_url(tmp_path) + "?reads_on_loop=false")
    assert backend._loop_reads is None
    assert SQLBackend.from_url(_file_url(tmp_path) + "?reads_on_loop=true")._loop_reads


def test_reads_on_loop_is_on_for_a_file_the_backend_opens_and_off_elsewhere(
    tmp_path: Path,
) -> None:
    assert SQLBackend.from_url(_file_url(tmp_path))._loop_reads is not None
    assert SQLBackend.from_url("sqlite+aiosqlite:///:memory:")._loop_reads is None
    shared = "sqlite+aiosqlite:///file:shared?mode=memory&uri=true"
    assert SQLBackend.from_url(shared)._loop_reads is None
    host_engine = create_async_engine(_file_url(tmp_path))
    assert SQLBackend(host_engine)._loop_reads is None  # its connections may be special
    postgres = SQLBackend.from_url("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    assert postgres._loop_reads is None


async def test_a_read_on_the_loop_by_default_never_waits_for_aiosqlite(tmp_path: Path) -> None:
    backend = SQLBackend.from_url(_file_url(tmp_path))
    try:
        await backend.set(_write("k"))
        # The read completes within the caller's step: it never awaited aiosqlite's thread.
        read = backend.get("scope-1", "k").__await__()
        with pytest.raises(StopIteration) as done:
            read.send(None)
        assert done.value.value == '"v"'
    finally:
        await backend.aclose()


async def test_a_read_on_the_loop_needs_no_place_at_the_gate(tmp_path: Path) -> None:
    # One place, held: a read through the gate would wait for it and time out.
    backend = SQLBackend.from_url(
        _file_url(tmp_path), pool_size=1, max_overflow=0, timeout=0.5, reads_on_loop=True
    )
    try:
        await backend.set(_write("k"))
        async with backend._gateway.guard():
            assert await backend.get("scope-1", "k") == '"v"'
            assert await backend.list_keys("scope-1", "", 10, None) == (["k"], False)
            assert await backend.read_scopes(["scope-1"]) == {"scope-1": {"k": '"v"'}}
    finally:
        await backend.aclose()


async def test_a_read_that_finds_the_database_locked_runs_on_the_thread(tmp_path: Path) -> None:
    # A host's engine leaves SQLite's default rollback journal: a writer holding the
    # exclusive lock keeps readers out, and the loop's connection never waits for it.
    path = tmp_path / "host.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    backend = SQLBackend(engine, reads_on_loop=True)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        await backend.set(_write("k"))
        holder.execute("BEGIN EXCLUSIVE")
        read = asyncio.ensure_future(backend.get("scope-1", "k"))
        await asyncio.sleep(0.2)  # the read has met the lock and waits on the thread
        holder.execute("ROLLBACK")
        assert await read == '"v"'
    finally:
        holder.close()
        await backend.aclose()
        await engine.dispose()


async def test_a_read_past_the_loop_budget_moves_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _file_url(tmp_path)
    writer = SQLBackend.from_url(url, reads_on_loop=False)
    await writer.set_many([_write(f"key.{i:05d}", f'"{i}"') for i in range(3000)])
    await writer.aclose()
    # A budget passed as soon as the statement starts: SQLite interrupts it at its first
    # look (a read of 3000 rows runs far more steps than one look's worth).
    monkeypatch.setattr(loop_reads, "LOOP_BUDGET", 1e-9)
    reader = SQLBackend.from_url(url)
    on_thread: list[str] = []
    run = reader._gateway.run

    async def counted(*args: Any, **kwargs: Any) -> Any:
        on_thread.append(args[-1])  # what the call does
        return await run(*args, **kwargs)

    monkeypatch.setattr(reader._gateway, "run", counted)
    try:
        snapshot = await reader.read_scopes(["scope-1"])
        assert len(snapshot["scope-1"]) == 3000  # every row, read again on the thread
        assert snapshot["scope-1"]["key.02999"] == '"2999"'
        assert on_thread == ["read a snapshot"]
    finally:
        await reader.aclose()


async def test_a_uri_memory_database_is_not_read_on_the_loop() -> None:
    # ``file::memory:`` is a private in-memory database: a second connection would see
    # another, empty one.
    backend = SQLBackend.from_url("sqlite+aiosqlite:///file::memory:?uri=true")
    try:
        assert backend._loop_reads is None
        await backend.set(_write("k"))
        assert await backend.get("scope-1", "k") == '"v"'
    finally:
        await backend.aclose()


def test_a_backend_reading_on_the_loop_serves_one_asyncio_run_after_another(
    tmp_path: Path,
) -> None:
    backend = SQLBackend.from_url(_file_url(tmp_path), reads_on_loop=True)

    async def round_trip(n: int) -> str | None:
        await backend.set(_write("k", f'"{n}"'))
        return await backend.get("scope-1", "k")

    for n in range(3):
        assert asyncio.run(round_trip(n)) == f'"{n}"'
    asyncio.run(backend.aclose())
