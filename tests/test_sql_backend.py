"""What is specific to the SQL backend: layout, statements, indexes, faults, options."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import requires
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy
from hypothesis import given
from hypothesis import strategies as st
from packaging.requirements import Requirement
from services import cleared
from sqlalchemy import MetaData, create_engine, event, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import Pool
from sqlalchemy.util import await_only
from sqlsupport import (
    DIALECTS,
    execute,
    postgres_url,
    private_schema,
    row_locked,
    terminate_connections,
    until_lock_waits,
)

import statekit.backends.sql.backend as sql_backend_module
import statekit.backends.sql.layout as sql_layout_module
from statekit import BackendURL
from statekit.backends.base import CONTEXT_FIELDS, ScopeContext, StateWrite
from statekit.backends.sql import EXPORT_BATCH_SIZE, SQLBackend, prefix_successor, state_table
from statekit.backends.sql.driver import discard_with_older
from statekit.backends.sql.layout import NO_VERSION_COLUMN
from statekit.backends.sql.schema import identity_index_names
from statekit.backends.sql.statements import ROW_COLUMNS, DriverStatement, Statements
from statekit.backends.sql.upgrade import CREATE_IDENTITY_INDEXES
from statekit.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    StoreClosedError,
)

CTX = ScopeContext("runner-1", "binding-1", "conversation", bot_id="bot-1")


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    yield from private_schema()


def sqlite_url(tmp_path: Path, name: str = "state.db") -> str:
    return f"sqlite+aiosqlite:///{tmp_path / name}"


@pytest_asyncio.fixture(params=DIALECTS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLBackend]:
    """A fresh backend on each dialect (PostgreSQL: a private schema per test)."""
    if request.param == "sqlite":
        backend = SQLBackend.from_url(sqlite_url(tmp_path))
        yield backend
        await backend.aclose()
        return
    schema = request.getfixturevalue("pg_schema") + f"_{uuid.uuid4().hex[:6]}"
    backend = SQLBackend.from_url(postgres_url(), schema=schema)
    yield backend
    await backend.aclose()
    await execute_pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def execute_pg(*statements: str) -> int:
    """Run ``statements`` on a connection of the test's own; the last one's row count."""
    return await execute(postgres_url(), *statements)


async def log_statements(backend: SQLBackend) -> list[str]:
    """Every statement the backend's connections run from now on, as the driver reports
    it: asyncpg's query logger (one entry per round trip, an executemany counts once) or
    sqlite3's trace callback (every statement SQLite runs, each row of an executemany and
    BEGIN / COMMIT included). The backend runs its statements on the driver's connection,
    out of sight of SQLAlchemy's cursor events. Await ``asyncio.sleep(0)`` before reading:
    asyncpg reports through the event loop."""
    seen: list[str] = []
    postgres = backend.engine.dialect.name == "postgresql"

    def instrument(dbapi_connection: Any, _record: Any) -> None:
        driver = dbapi_connection.driver_connection
        if postgres:
            driver.add_query_logger(lambda record: seen.append(record.query))
        else:
            await_only(driver.set_trace_callback(seen.append))

    event.listen(backend.engine.sync_engine, "connect", instrument)
    await backend.engine.dispose()  # every connection from now on is a new, logged one
    loop_reads = backend._loop_reads
    if loop_reads is not None:  # SQLite's reads run on a connection of their own
        (loop_reads._connection or loop_reads._open()).set_trace_callback(seen.append)
    return seen


# ---- layout -----------------------------------------------------------------------


async def test_create_schema_builds_the_expected_table(backend: SQLBackend) -> None:
    await backend.create_schema()
    await backend.create_schema()  # idempotent
    assert (await backend.describe()).layout == "ok"

    def layout(conn: Any) -> dict[str, Any]:
        insp = inspect(conn)
        name, schema = backend.table.name, backend.table.schema
        return {
            "columns": {c["name"]: c for c in insp.get_columns(name, schema)},
            "uniques": [u["column_names"] for u in insp.get_unique_constraints(name, schema)],
        }

    async with backend.engine.connect() as conn:
        found = await conn.run_sync(layout)
    assert set(found["columns"]) == {
        "id", "runner_id", "binding_identity", "scope", "scope_key", "state_key", "value_json",
        "bot_id", "workspace_id", "conversation_id", "thread_id", "actor_type", "actor_id",
        "subject_type", "subject_id", "created_at", "updated_at", "version",
    }  # fmt: skip
    assert ["scope_key", "state_key"] in found["uniques"]
    if backend.engine.dialect.name == "postgresql":
        assert found["columns"]["state_key"]["type"].collation == "C"
        assert found["columns"]["created_at"]["type"].timezone is True


async def test_describe_reports_server_and_missing_table(tmp_path: Path) -> None:
    backend = SQLBackend.from_url(sqlite_url(tmp_path), create_schema=False)
    try:
        info = await backend.describe()
        assert info.backend == "sqlite"
        assert info.server_version.count(".") == 2
        assert info.layout == "missing table statekit_state"
        assert not info.layout_ok
    finally:
        await backend.aclose()


# ---- statements -------------------------------------------------------------------


async def test_each_operation_is_one_statement(backend: SQLBackend) -> None:
    await backend.create_schema()
    seen = await log_statements(backend)

    async def count() -> int:
        await asyncio.sleep(0)
        return len(seen)

    assert await backend.set(StateWrite("s1", "k", '"a"', CTX)) == 1
    assert await count() == 1  # no BEGIN / COMMIT around it either
    assert "ON CONFLICT" in seen[0]
    assert await backend.set(StateWrite("s1", "k", '"b"', CTX)) == 2
    assert await count() == 2
    assert await backend.read_scopes(["s1", "s2", "s3", "s4"]) == {
        "s1": {"k": '"b"'}, "s2": {}, "s3": {}, "s4": {}
    }  # fmt: skip
    assert await count() == 3
    assert await backend.get("s1", "k") == '"b"'
    assert await backend.list_keys("s1", "k", 10, None) == (["k"], False)
    assert await backend.set(StateWrite("s1", "k", '"c"', CTX), 2) == 3
    assert await count() == 6
    assert sum(1 for s in seen if s.lstrip().upper().startswith("SELECT")) == 3
    writes = [StateWrite("s2", f"k{i}", str(i), CTX) for i in range(20)]
    await backend.set_many(writes)
    await count()
    batch = [s.strip().split()[0].upper() for s in seen[6:]]
    if backend.engine.dialect.name == "postgresql":
        # One executemany: one round trip, atomic (a WITH query: the deadline's part).
        assert batch == ["WITH"]
    else:
        assert batch == ["BEGIN", *["INSERT"] * 20, "COMMIT"]  # one transaction


async def test_set_many_applies_repeated_keys_in_order(backend: SQLBackend) -> None:
    await backend.set_many(
        [
            StateWrite("s", "k", "1", CTX),
            StateWrite("s", "j", "2", CTX),
            StateWrite("s", "k", "3", CTX),
        ]
    )
    assert await backend.get_versioned("s", "k") == ("3", 2)
    assert await backend.get_versioned("s", "j") == ("2", 1)


async def test_update_keeps_the_context_of_creation(backend: SQLBackend) -> None:
    await backend.set(StateWrite("s", "k", "1", CTX))
    other = ScopeContext("runner-2", "binding-2", "conversation", thread_id="t")
    await backend.set(StateWrite("s", "k", "2", other))
    (entry,) = [e async for e in backend.iter_entries()]
    assert entry.context == CTX
    assert entry.version == 2
    assert entry.created_at <= entry.updated_at


# ---- listing ----------------------------------------------------------------------


def test_prefix_successor_increments_the_last_code_point() -> None:
    assert prefix_successor("ab") == "ac"
    assert prefix_successor("a\U0010ffff") == "b"
    assert prefix_successor("\U0010ffff\U0010ffff") is None
    assert prefix_successor("a\ud7ff") == "a\ue000"  # surrogates are skipped
    assert prefix_successor("a%") == "a&"


_key_chars = st.characters(exclude_categories=["Cs"]) | st.sampled_from(
    ["\U0010ffff", "\ud7ff", "\ue000", "a", "b"]
)


@given(prefix=st.text(_key_chars, min_size=1, max_size=4), key=st.text(_key_chars, max_size=6))
def test_prefix_range_selects_exactly_the_keys_with_the_prefix(prefix: str, key: str) -> None:
    successor = prefix_successor(prefix)
    in_range = prefix <= key and (successor is None or key < successor)
    assert in_range == key.startswith(prefix)


async def test_listing_at_the_edges_of_the_code_space(backend: SQLBackend) -> None:
    keys = ["a", "a\U0010ffff", "a\U0010ffffz", "b", "\ud7ff1", "\ue000", "\U0010ffff"]
    for key in keys:
        await backend.set(StateWrite("s", key, "1", CTX))
    assert await backend.list_keys("s", "a\U0010ffff", 10, None) == (
        ["a\U0010ffff", "a\U0010ffffz"],
        False,
    )
    assert await backend.list_keys("s", "\ud7ff", 10, None) == (["\ud7ff1"], False)
    assert await backend.list_keys("s", "\U0010ffff", 10, None) == (["\U0010ffff"], False)
    assert await backend.list_keys("s", "", 100, None) == (sorted(keys), False)
    assert await backend.list_keys("s", "a", 1, "a") == (["a\U0010ffff"], True)


@pytest.mark.postgres
async def test_queries_use_the_unique_index_on_postgres(pg_schema: str) -> None:
    schema = f"{pg_schema}_explain"
    backend = SQLBackend.from_url(postgres_url(), schema=schema)
    try:
        await backend.set_many(
            [
                StateWrite(f"conversation:v2:{s:064x}", f"item:{k:04d}", "{}", CTX)
                for s in range(60)
                for k in range(60)
            ]
        )
        scopes = backend.table_fullname + "_scopes"
        async with backend.engine.connect() as conn:
            # Deadlines of many other scopes: each read checks its scope's by the key.
            await conn.execute(
                text(
                    f"INSERT INTO {scopes} SELECT 'subject:v2:' || md5(i::text), i "
                    "FROM generate_series(1, 5000) AS i"
                )
            )
            await conn.execute(text(f"ANALYZE {backend.table_fullname}"))
            await conn.execute(text(f"ANALYZE {scopes}"))
            await conn.commit()
        scope = f"conversation:v2:{7:064x}"
        sql = backend._statements
        statements: dict[str, tuple[DriverStatement, dict[str, Any]]] = {
            "get": (sql.get, {"scope_key": scope, "state_key": "item:0001"}),
            "snapshot": (
                sql.snapshot(2),
                {"scope_key_0": scope, "scope_key_1": f"actor:v2:{1:064x}"},
            ),
            "list": (
                sql.lists[(">=", True)],
                {"scope_key": scope, "low": "item:00", "high": "item:01", "limit": 11},
            ),
            "page": (
                sql.lists[(">", True)],
                {"scope_key": scope, "low": "item:0012", "high": "item;", "limit": 101},
            ),
        }
        for name, (statement, params) in statements.items():
            # The clock, where half the other scopes have expired: every read checks
            # its own scope's deadline, by the scopes table's key.
            params["now"] = 2500.0
            # The very SQL the backend sends, with its parameters bound.
            async with backend.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None
                rows = await driver.fetch(f"EXPLAIN {statement.sql}", *statement.arguments(params))
            plan = "\n".join(row[0] for row in rows)
            assert "uq_statekit_state_scope_key_state_key" in plan, (name, plan)
            assert "statekit_state_scopes_pkey" in plan, (name, plan)
            assert "Seq Scan" not in plan, (name, plan)
            assert "Sort" not in plan, (name, plan)
    finally:
        await backend.aclose()
        await execute_pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ---- connections ------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_load_above_the_pool_size_reuses_connections(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Queued operations take the connection of the one that ends: SQLAlchemy's pool
    would otherwise close the overflow connections a burst returns and open new ones.
    (Without coalescing, so that every call queues at the gate: coalesced calls queue
    for their batch instead, see test_sql_coalesce.)"""
    options: dict[str, Any] = {"pool_size": 2, "max_overflow": 2, "coalesce": False}
    if dialect == "sqlite":
        backend = SQLBackend.from_url(sqlite_url(tmp_path), **options)
    else:
        schema = request.getfixturevalue("pg_schema")
        backend = SQLBackend.from_url(postgres_url(), schema=schema, **options)
    opened: list[object] = []
    event.listen(backend.engine.sync_engine, "connect", lambda *_: opened.append(1))
    try:
        await backend.create_schema()

        async def work(i: int) -> None:
            for n in range(10):
                await backend.set(StateWrite("load", f"k{i % 8}", str(n), CTX))
                assert await backend.get("load", f"k{i % 8}") is not None
                await backend.set_many([StateWrite("load", f"m{i}", str(n), CTX)])

        await asyncio.gather(*(work(i) for i in range(64)))
        assert len(opened) <= 4  # pool_size + max_overflow, each opened once
        pool: Any = backend.engine.pool
        assert pool.checkedout() == 0  # nothing is left handed over once the load ends
        assert pool.checkedin() == 2  # and the overflow went away, as SQLAlchemy's does
    finally:
        await backend.clear()
        await backend.aclose()


@pytest.mark.sqlite
async def test_a_connection_handed_over_never_blocks_the_engine_for_others(
    tmp_path: Path,
) -> None:
    # Reads on aiosqlite's thread: one on the event loop would not wait for a connection.
    backend = SQLBackend.from_url(
        sqlite_url(tmp_path), pool_size=1, max_overflow=0, timeout=1, reads_on_loop=False
    )
    try:
        await backend.create_schema()
        # In this order: the set holds the one connection, the describe queues first, the
        # get second. The set's connection is handed over for the get, yet the describe
        # (next in line, on the engine itself) gets it.
        _, info, value = await asyncio.gather(
            backend.set(StateWrite("s", "k", "1", CTX)), backend.describe(), backend.get("s", "k")
        )
        assert info.layout == "ok"
        assert value == "1"
        assert backend.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await backend.aclose()


# ---- faults -----------------------------------------------------------------------


@dataclass(frozen=True)
class Terminable:
    """A PostgreSQL backend whose connections carry an application name of their own."""

    backend: SQLBackend
    application_name: str

    async def terminate(self) -> int:
        """Terminate the backend's connections (as an administrator or a failover would);
        how many there were."""
        return await terminate_connections(self.application_name)


@pytest_asyncio.fixture
async def terminable(pg_schema: str) -> AsyncIterator[Terminable]:
    """A backend whose connections a test can terminate; cleared and closed afterwards."""
    name = f"statekit-fault-{uuid.uuid4().hex[:8]}"
    async with cleared(
        SQLBackend.from_url(postgres_url(), schema=pg_schema, application_name=name)
    ) as backend:
        yield Terminable(backend, name)


@pytest.mark.postgres
async def test_recovers_after_its_connections_are_terminated(terminable: Terminable) -> None:
    backend = terminable.backend
    await backend.set(StateWrite("s", "before", "1", CTX))

    terminating = asyncio.Event()

    async def writer(n: int) -> int:
        """Write until the connections are gone, then a few times more."""
        failures, after = 0, 0
        while after < 5:
            try:
                await backend.set(StateWrite("s", f"w{n}", str(after), CTX))
            except BackendUnavailableError:
                failures += 1
            if terminating.is_set():
                after += 1
            await asyncio.sleep(0)
        return failures

    tasks = [asyncio.create_task(writer(n)) for n in range(8)]
    await asyncio.sleep(0.01)
    terminated = await terminable.terminate()
    terminating.set()
    assert terminated >= 1
    failures = await asyncio.gather(*tasks)  # only typed errors, never a driver exception
    assert sum(failures) >= 1

    # The same backend recovers by itself: a fresh connection after at most one failure.
    for _ in range(2):
        try:
            assert await backend.get("s", "before") == "1"
            break
        except BackendUnavailableError:
            continue
    else:
        pytest.fail("backend did not recover")
    await backend.set(StateWrite("s", "after", "2", CTX))
    assert await backend.get("s", "after") == "2"


@pytest.mark.postgres
async def test_reads_retry_once_on_a_terminated_connection(terminable: Terminable) -> None:
    backend = terminable.backend
    await backend.set(StateWrite("s", "k", "1", CTX))
    await asyncio.gather(*(backend.get("s", "k") for _ in range(4)))  # several pooled
    terminated = await terminable.terminate()
    assert terminated >= 1
    assert await backend.get("s", "k") == "1"  # no error: retried on a new connection
    assert await backend.list_keys("s", "", 10, None) == (["k"], False)


@pytest.mark.postgres
async def test_a_blocked_statement_times_out(pg_schema: str) -> None:
    name = f"statekit-blocked-{uuid.uuid4().hex[:8]}"
    # Long enough for the writes around the blocked one to commit on a loaded server.
    backend = SQLBackend.from_url(
        postgres_url(), schema=pg_schema, timeout=1, application_name=name
    )
    try:
        await backend.set(StateWrite("s", "locked", "1", CTX))
        async with row_locked(backend, "locked") as conn:
            with pytest.raises(BackendTimeoutError):
                await backend.set(StateWrite("s", "locked", "2", CTX))
            # The client gives up first (asyncpg's command_timeout); the server ends the
            # statement at its statement_timeout or on the cancel request. Released before
            # that, the lock would let the blocked write land after all (as a timeout's
            # write may: BackendTimeoutError).
            await until_lock_waits(name, waiting=False)
            await conn.rollback()
        assert await backend.set(StateWrite("s", "locked", "3", CTX)) == 2
    finally:
        await backend.clear()
        await backend.aclose()


@pytest.mark.postgres
async def test_a_batch_the_server_aborts_to_break_a_deadlock_is_run_again(pg_schema: str) -> None:
    """A deadlock between a batch and another transaction: PostgreSQL aborts the batch
    (its session detects the cycle first), which rolled back whole is run again and
    commits once the other transaction ends. The caller sees no error."""
    name = f"statekit-deadlock-{uuid.uuid4().hex[:8]}"
    backend = SQLBackend.from_url(
        postgres_url(), schema=pg_schema, timeout=30, application_name=name
    )
    locker = create_async_engine(postgres_url())
    try:
        await backend.set_many([StateWrite("s", "a", "1", CTX), StateWrite("s", "b", "1", CTX)])
        table = backend.table_fullname
        async with locker.connect() as conn:
            # The other session waits far longer before it looks for a deadlock.
            await conn.execute(text("SET deadlock_timeout = '60s'"))
            await conn.execute(text(f"UPDATE {table} SET version = version WHERE state_key = 'b'"))
            batch = asyncio.create_task(
                backend.set_many([StateWrite("s", "a", "2", CTX), StateWrite("s", "b", "2", CTX)])
            )
            await until_lock_waits(name, waiting=True)  # holds 'a', waits for 'b'
            await conn.execute(text(f"UPDATE {table} SET version = version WHERE state_key = 'a'"))
            await conn.commit()
        await batch
        assert await backend.get("s", "a") == "2"
        assert await backend.get("s", "b") == "2"
    finally:
        await locker.dispose()
        await backend.clear()
        await backend.aclose()


@pytest.mark.postgres
async def test_unreachable_server_is_a_typed_error() -> None:
    backend = SQLBackend.from_url(
        "postgresql+asyncpg://postgres@127.0.0.1:1/statekit", connect_timeout=1
    )
    try:
        with pytest.raises(BackendUnavailableError):
            await backend.describe()
        with pytest.raises(BackendUnavailableError):
            await backend.get("s", "k")
    finally:
        await backend.aclose()


# ---- SQLite -----------------------------------------------------------------------


@pytest.mark.sqlite
async def test_sqlite_file_persists_across_close_and_reopen(tmp_path: Path) -> None:
    backend = SQLBackend.from_url(sqlite_url(tmp_path))
    await backend.set(StateWrite("s", "k", '{"kept": true}', CTX))
    await backend.aclose()
    reopened = SQLBackend.from_url(sqlite_url(tmp_path), busy_timeout=2.5)
    try:
        assert await reopened.get_versioned("s", "k") == ('{"kept": true}', 1)
        async with reopened.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            busy_ms = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert mode == "wal"
        assert busy_ms == 2500
    finally:
        await reopened.aclose()


@pytest.mark.sqlite
async def test_concurrent_writers_on_one_sqlite_file_never_fail(tmp_path: Path) -> None:
    first = SQLBackend.from_url(sqlite_url(tmp_path), pool_size=5)
    second = SQLBackend.from_url(sqlite_url(tmp_path), pool_size=5)
    try:
        await first.create_schema()

        async def write(i: int) -> None:
            backend = first if i % 2 else second
            await backend.set(StateWrite("s", f"k{i % 10}", str(i), CTX))
            await backend.set_many([StateWrite("t", f"k{i}", str(i), CTX)])

        await asyncio.gather(*(write(i) for i in range(50)))
        keys, _ = await first.list_keys("t", "", 100, None)
        assert len(keys) == 50
        assert sum([(await first.get_versioned("s", f"k{i}"))[1] for i in range(10)]) == 50
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.sqlite
async def test_memory_database_is_shared_by_concurrent_tasks() -> None:
    backend = SQLBackend.from_url("sqlite+aiosqlite:///:memory:")
    try:

        async def work(i: int) -> None:
            await backend.set(StateWrite("s", f"k{i}", str(i), CTX))
            await backend.set_many([StateWrite("t", f"k{i}", str(i), CTX)])
            assert await backend.get("s", f"k{i}") == str(i)

        await asyncio.gather(*(work(i) for i in range(50)))
        assert len((await backend.list_keys("t", "", 100, None))[0]) == 50
        # Writing while exporting neither deadlocks nor loses entries.
        exported = 0
        async for entry in backend.iter_entries():
            exported += 1
            await backend.set(StateWrite("u", entry.state_key, "0", CTX))
        assert exported == 100
    finally:
        await backend.aclose()


@pytest.mark.parametrize("url", ["file", "sqlite+aiosqlite:///:memory:"])
@pytest.mark.sqlite
async def test_export_reads_in_batches_and_sees_everything(tmp_path: Path, url: str) -> None:
    backend = SQLBackend.from_url(sqlite_url(tmp_path) if url == "file" else url)
    try:
        count = EXPORT_BATCH_SIZE * 2 + 7
        await backend.set_many([StateWrite("s", f"k{i}", str(i), CTX) for i in range(count)])
        entries = [e async for e in backend.iter_entries()]
        assert sorted(e.state_key for e in entries) == sorted(f"k{i}" for i in range(count))
        assert all(e.created_at.tzinfo is not None for e in entries)
    finally:
        await backend.aclose()


# ---- construction and options -----------------------------------------------------


@pytest.mark.sqlite
def test_keyword_options_win_over_url_query(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path) + "?table_name=from_url&pool_size=3&busy_timeout=2"
    assert SQLBackend.from_url(url).table_fullname == "from_url"
    assert SQLBackend.from_url(url).engine.pool.size() == 3  # type: ignore[attr-defined]
    backend = SQLBackend.from_url(url, table_name="from_kwargs", pool_size=4)
    assert backend.table_fullname == "from_kwargs"
    assert backend.engine.pool.size() == 4  # type: ignore[attr-defined]
    assert "table_name" not in str(backend.engine.url)  # statekit options never reach the driver


def test_pool_defaults_fit_each_engine(tmp_path: Path) -> None:
    pg: Any = SQLBackend.from_url("postgresql+asyncpg://u@localhost/db").engine.pool
    assert (pg.size(), pg._max_overflow) == (10, 10)
    sqlite: Any = SQLBackend.from_url(sqlite_url(tmp_path)).engine.pool
    assert (sqlite.size(), sqlite._max_overflow) == (4, 0)
    given: Any = SQLBackend.from_url(sqlite_url(tmp_path), max_overflow=2).engine.pool
    assert (given.size(), given._max_overflow) == (4, 2)


@pytest.mark.postgres
def test_postgres_options_and_password_masking() -> None:
    url = "postgresql+asyncpg://alice:s3cret@db.example:5432/app?schema=tenant&timeout=2"
    backend = SQLBackend.from_url(url, schema="other", pool_size=7)
    assert "s3cret" not in repr(backend)
    assert "***" in repr(backend)
    assert backend.table_fullname == "other.statekit_state"
    assert backend.engine.pool.size() == 7  # type: ignore[attr-defined]
    assert SQLBackend.from_url(url).table_fullname == "tenant.statekit_state"


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("mysql+aiomysql://localhost/x", {}),
        ("sqlite+aiosqlite:///x.db", {"pool_size": 0}),
        ("sqlite+aiosqlite:///x.db?timeout=soon", {}),
        ("sqlite+aiosqlite:///x.db", {"no_such_option": 1}),
        ("sqlite+aiosqlite:///x.db", {"schema": "tenant"}),
        ("not a url", {}),
    ],
)
def test_bad_url_or_option_is_a_configuration_error(
    url: str, options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a relative SQLite path would be created
    with pytest.raises(ConfigurationError):
        SQLBackend.from_url(url, **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.sqlite
async def test_host_owned_engine_is_not_disposed(tmp_path: Path) -> None:
    engine = create_async_engine(sqlite_url(tmp_path))
    backend = SQLBackend(engine, table_name="host_state")
    await backend.set(StateWrite("s", "k", "1", CTX))
    await backend.aclose()
    await backend.aclose()  # idempotent
    with pytest.raises(StoreClosedError):
        await backend.get("s", "k")
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM host_state"))).scalar_one() == 1
    await engine.dispose()


# ---- an existing table of the original store ---------------------------------------

ORIGINAL_COLUMNS = """
    id {id},
    runner_id VARCHAR(255) NOT NULL, binding_identity VARCHAR(255) NOT NULL,
    scope VARCHAR(32) NOT NULL, scope_key VARCHAR(255) NOT NULL,
    state_key VARCHAR(255) NOT NULL, value_json TEXT NOT NULL,
    bot_id VARCHAR(255), workspace_id VARCHAR(255), conversation_id VARCHAR(255),
    thread_id VARCHAR(255), actor_type VARCHAR(255), actor_id VARCHAR(255),
    subject_type VARCHAR(255), subject_id VARCHAR(255),
    created_at {ts} NOT NULL, updated_at {ts} NOT NULL
"""


async def test_existing_table_is_used_after_the_documented_migration(
    backend: SQLBackend,
) -> None:
    pg = backend.engine.dialect.name == "postgresql"
    table = f'"{backend.table.schema}".agent_runner_state' if pg else "agent_runner_state"
    columns = ORIGINAL_COLUMNS.format(
        id="BIGSERIAL PRIMARY KEY" if pg else "INTEGER PRIMARY KEY",
        ts="TIMESTAMP WITH TIME ZONE" if pg else "DATETIME",
    )
    async with backend.engine.begin() as conn:
        if pg:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{backend.table.schema}"'))
        await conn.execute(text(f"CREATE TABLE {table} ({columns})"))
        await conn.execute(
            text(
                f"INSERT INTO {table} (runner_id, binding_identity, scope, scope_key, state_key,"
                " value_json, created_at, updated_at) VALUES ('r', 'b', 'conversation', 's',"
                " 'old', '\"v\"', '2024-01-02 03:04:05', '2024-01-02 03:04:05')"
            )
        )
    existing = SQLBackend(
        backend.engine, table_name="agent_runner_state", schema=backend.table.schema,
        create_schema=False,
    )  # fmt: skip
    info = await existing.describe()
    assert "missing unique (scope_key, state_key)" in info.layout
    assert NO_VERSION_COLUMN in info.warnings
    assert ("scope_key holds fewer than the 512" in info.layout) is pg  # SQLite: no widths
    with pytest.raises(ConfigurationError, match="missing unique"):
        await existing.get("s", "old")  # statements that cannot run are never tried
    # What `statekit init` runs: every change the documented migration makes.
    scopes = (
        f"{backend.table.schema}.agent_runner_state_scopes" if pg else "agent_runner_state_scopes"
    )
    changes = await existing.upgrade_schema()
    assert changes == [
        "add the version column (existing entries start at version 1)",
        "add the unique (scope_key, state_key)",
        *(["make scope_key VARCHAR(512)", 'make state_key VARCHAR(255) COLLATE "C"'] if pg else []),
        f"create the scopes table {scopes} (expiry; no scope has a deadline yet)",
        CREATE_IDENTITY_INDEXES.format(names=", ".join(identity_index_names("agent_runner_state"))),
    ]
    info = await existing.describe()
    assert (info.layout, info.warnings) == ("ok", ())
    assert await existing.upgrade_schema() == []  # nothing left to do
    assert await existing.get_versioned("s", "old") == ('"v"', 1)
    assert await existing.set(StateWrite("s", "old", '"w"', CTX)) == 2
    assert await existing.set(StateWrite("s", "new", '"n"', CTX)) == 1
    entries = {e.state_key: e async for e in existing.iter_entries()}
    assert entries["old"].created_at.year == 2024
    assert entries["old"].context.runner_id == "r"  # the context of creation is kept
    await existing.aclose()


@pytest.mark.sqlite
async def test_host_engine_handed_over_with_owns_client_is_disposed(tmp_path: Path) -> None:
    engine = create_async_engine(sqlite_url(tmp_path))
    backend = SQLBackend(engine, owns_client=True)
    await backend.set(StateWrite("s", "k", "1", CTX))
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    await backend.aclose()
    assert engine.pool.checkedin() == 0  # type: ignore[attr-defined]


@pytest.mark.sqlite
async def test_pool_size_admits_that_many_operations_and_pool_timeout_bounds_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_async_engine(sqlite_url(tmp_path))
    backend = SQLBackend(engine, pool_size=1, pool_timeout=0.2, owns_client=True)
    try:
        await backend.create_schema()
        # describe() holds the one place while it waits for a lock held elsewhere...
        lock = asyncio.Lock()
        await lock.acquire()

        real_layout = sql_layout_module.server_and_layout

        async def slow_layout(*args: Any) -> Any:
            async with lock:
                return await real_layout(*args)

        monkeypatch.setattr(sql_backend_module, "server_and_layout", slow_layout)
        holder = asyncio.create_task(backend.describe())
        await asyncio.sleep(0.05)
        # ... so the next operation waits its turn, at most pool_timeout seconds.
        with pytest.raises(BackendTimeoutError, match="no database connection free"):
            await backend.get("s", "k")
        lock.release()
        assert (await holder).layout == "ok"
        assert await backend.get("s", "k") is None  # the place is free again
    finally:
        await backend.aclose()


def test_repr_masks_the_password_of_a_host_engine() -> None:
    engine = create_async_engine("postgresql+asyncpg://alice:p%40ss@db.example/app")
    backend = SQLBackend(engine)
    assert repr(backend) == (
        "SQLBackend(url='postgresql+asyncpg://alice:***@db.example/app',"
        " table='public.statekit_state')"
    )


def test_from_url_takes_the_url_as_text_or_parsed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path) + "?table_name=parsed"
    assert SQLBackend.from_url(BackendURL(url)).table_fullname == "parsed"
    assert SQLBackend.from_url(url).table_fullname == "parsed"


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_row_arguments_follow_the_statement_parameters(dialect: str) -> None:
    url = "postgresql+asyncpg://u@h/db" if dialect == "postgresql" else "sqlite+aiosqlite://"
    statements = Statements(state_table(MetaData()), create_async_engine(url).dialect)
    context = ScopeContext(*(f"c{i}" for i in range(len(CONTEXT_FIELDS))))
    row = statements.row("sk", "k", "v", context, "now")
    named = {
        **context.as_dict(),
        **{"scope_key": "sk", "state_key": "k", "value_json": "v"},
        **{"created_at": "now", "updated_at": "now"},
    }
    assert set(named) == set(ROW_COLUMNS)
    for statement in (statements.upsert, statements.upsert_many, statements.insert_new):
        assert list(row) == statement.arguments(named)


def test_the_private_pool_api_is_there_in_the_pinned_sqlalchemy(tmp_path: Path) -> None:
    """``driver.discard_with_older`` calls ``Pool._invalidate``, private to SQLAlchemy: an
    upgrade that drops or changes it fails here, not in production."""
    pins = {Requirement(r).specifier for r in requires("statekit") or () if "sqlalchemy" in r}
    assert pins, "pyproject.toml pins no SQLAlchemy version"
    for pin in pins:
        assert pin.contains(sqlalchemy.__version__), (pin, sqlalchemy.__version__)
    assert callable(getattr(Pool, "_invalidate", None)), (
        "driver.discard_with_older needs Pool._invalidate, gone in SQLAlchemy "
        + sqlalchemy.__version__
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=2)
    try:
        older = engine.pool.connect()
        older_dbapi = older.dbapi_connection
        lost = engine.pool.connect()
        older.close()  # back in the pool, opened before the loss
        discard_with_older(engine.pool, lost, ConnectionError("lost"))
        assert not lost.is_valid, "driver.discard_with_older left the lost connection valid"
        lost.close()
        again = engine.pool.connect()
        # The older connection is replaced on checkout, as after a disconnect.
        assert again.dbapi_connection is not older_dbapi, (
            "driver.discard_with_older no longer has the pool replace older connections"
        )
        again.close()
    finally:
        engine.dispose()


def test_bare_dialect_urls_use_the_async_drivers() -> None:
    pg = SQLBackend.from_url("postgresql://u@localhost/db?ssl=disable")
    assert pg.engine.url.drivername == "postgresql+asyncpg"
    # Checked driver parameters become asyncpg's connect arguments (test_sql_urls.py).
    assert pg.engine.url.query == {}
    assert SQLBackend.from_url("sqlite://").engine.url.drivername == "sqlite+aiosqlite"


def test_importing_statekit_does_not_import_sqlalchemy() -> None:
    code = "import sys, statekit; assert 'sqlalchemy' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_sqlite_timestamps_are_sqlalchemy_s_text(moment: datetime) -> None:
    """SQLite's timestamps are written as SQLAlchemy's ``DATETIME`` writes them (the
    backend spells its default storage format with ``isoformat``)."""
    from sqlalchemy.dialects import sqlite

    from statekit.backends.sql.statements import _timestamp_processor

    dialect = sqlite.dialect()
    impl = sqlalchemy.DateTime().dialect_impl(dialect)
    expected = impl.bind_processor(dialect)
    found = _timestamp_processor(impl, dialect)
    assert expected is not None
    assert found is not None
    assert found(moment) == expected(moment)
