"""Expiry on the SQL backend beyond the contract: the scopes table and its layouts, a table
found without one (``statekit init`` adds it), the original store's table, writers racing
to restart an expired scope, and the sweep under concurrent writers. On a SQLite file and
a private schema of the real PostgreSQL server, on a fake clock where time matters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import MetaData, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlsupport import DIALECTS, Place, execute, original_table, place_of
from test_cli_schema import statekit_cmd

from benchmarks.sql_expiry import fill_expired, sweep_under_writers
from statekit.backends.base import Capability, ScopeContext, StateWrite, SweepResult
from statekit.backends.sql import SQLBackend
from statekit.backends.sql.layout import no_scopes_table
from statekit.errors import ConfigurationError, UnsupportedCapabilityError
from statekit.testing.clocks import FakeClock

CTX = ScopeContext("runner-1", "binding-1", "conversation")
HOUR = 3600.0


@pytest_asyncio.fixture(params=DIALECTS)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    async with place_of(request.param, tmp_path, "state.db") as place:
        yield place


def faked(backend: SQLBackend) -> FakeClock:
    clock = FakeClock()
    backend.clock = clock
    return clock


# ---- layouts ----------------------------------------------------------------------------


async def test_the_scopes_table_is_created_beside_the_entries_table(place: Place) -> None:
    backend = place.backend()
    await backend.create_schema()

    def layout(conn: Any) -> tuple[list[str], list[Any], list[Any]]:
        insp = inspect(conn)
        columns = [c["name"] for c in insp.get_columns("statekit_state_scopes", place.schema)]
        key = insp.get_pk_constraint("statekit_state_scopes", place.schema)["constrained_columns"]
        indexes = [
            i["column_names"] for i in insp.get_indexes("statekit_state_scopes", place.schema)
        ]
        return columns, key, indexes

    async with backend.engine.connect() as conn:
        columns, key, indexes = await conn.run_sync(layout)
    assert (columns, key, indexes) == (["scope_key", "expires_at"], ["scope_key"], [["expires_at"]])
    info = await backend.describe()
    assert (info.layout, info.warnings) == ("ok", ())
    assert Capability.EXPIRY in backend.capabilities
    assert await backend.upgrade_schema() == []


@pytest.mark.parametrize("name", ["statekit_state_scopes", "x_scopes"])
def test_a_table_named_like_a_scopes_table_is_refused(name: str) -> None:
    engine = create_async_engine("postgresql+asyncpg://u@localhost/db")
    with pytest.raises(ConfigurationError, match="_scopes"):
        SQLBackend(engine, table_name=name)


def test_the_scopes_tables_names_fit_postgres() -> None:
    engine = create_async_engine("postgresql+asyncpg://u@localhost/db")
    SQLBackend(engine, table_name="t" * 40)  # uq_<t>_scope_key_state_key: 63 characters
    with pytest.raises(ConfigurationError, match="too long"):
        SQLBackend(engine, table_name="t" * 41)


# ---- a table without a scopes table -------------------------------------------------------


async def _without_scopes(place: Place) -> SQLBackend:
    """statekit's table with an entry, whose scopes table has been dropped; a backend over
    it that creates nothing."""
    first = place.backend()
    await first.set(StateWrite("s", "old", '"v"', CTX))
    await execute(place.url, f"DROP TABLE {place.name('statekit_state_scopes')}")
    return place.backend(create_schema=False)


async def test_a_table_without_scopes_table_is_served_without_expiry(place: Place) -> None:
    backend = await _without_scopes(place)
    info = await backend.describe()
    assert info.layout == "ok"
    scopes = place.name("statekit_state_scopes").replace('"', "")
    assert info.warnings == (no_scopes_table(scopes),)
    assert backend.capabilities == frozenset({Capability.VERSIONS, Capability.ERASURE})
    with pytest.raises(UnsupportedCapabilityError, match="scopes table"):
        await backend.set(StateWrite("s", "k", "1", CTX, ttl=HOUR))
    with pytest.raises(UnsupportedCapabilityError, match="scopes table"):
        await backend.set_many([StateWrite("s", "k", "1", CTX, ttl=HOUR)])
    assert await backend.get("s", "k") is None  # nothing was written
    assert await backend.set(StateWrite("s", "k", "1", CTX)) == 1
    assert await backend.read_scopes(["s"]) == {"s": {"old": '"v"', "k": "1"}}
    assert await backend.scope_deadline("s") is None
    assert [e.expires_at async for e in backend.iter_entries()] == [None, None]


async def test_upgrade_schema_adds_the_scopes_table(place: Place) -> None:
    backend = await _without_scopes(place)
    changes = await backend.upgrade_schema()
    assert len(changes) == 1
    assert changes[0].startswith("create the scopes table")
    assert Capability.EXPIRY in backend.capabilities
    assert (await backend.describe()).warnings == ()
    clock = faked(backend)
    await backend.set(StateWrite("s", "k", "1", CTX, ttl=10))
    assert await backend.read_scopes(["s"]) == {"s": {"old": '"v"', "k": "1"}}
    clock.advance(10)
    assert await backend.read_scopes(["s"]) == {"s": {}}


@pytest.mark.sqlite
def test_statekit_init_adds_the_scopes_table_to_the_original_table(tmp_path: Path) -> None:
    async def build() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'host.db'}")
        async with engine.begin() as conn:
            await conn.run_sync(original_table(MetaData()).create)
        await engine.dispose()

    asyncio.run(build())
    url = f"sqlite+aiosqlite:///{tmp_path / 'host.db'}?table_name=agent_runner_state"
    done = statekit_cmd(tmp_path, "init", "--url", url)
    assert done.returncode == 0, done.stderr
    assert "create the scopes table agent_runner_state_scopes" in done.stdout
    doctor = statekit_cmd(tmp_path, "doctor", "--url", url, "--json")
    assert doctor.returncode == 0, doctor.stderr
    assert "scopes" not in doctor.stdout  # no warning left


# ---- the original store's table -----------------------------------------------------------


async def test_the_original_table_expires_after_statekit_init(place: Place) -> None:
    engine = place.engine()
    async with engine.begin() as conn:
        await conn.run_sync(original_table(MetaData(), place.schema).create)
    backend = SQLBackend(
        engine, table_name="agent_runner_state", schema=place.schema, create_schema=False
    )
    await backend.set(StateWrite("kept", "k", "1", CTX))  # a scope written before expiry existed
    assert Capability.EXPIRY not in backend.capabilities
    await backend.upgrade_schema()
    assert backend.capabilities == frozenset(
        {Capability.VERSIONS, Capability.EXPIRY, Capability.ERASURE}
    )

    def columns(conn: Any) -> list[str]:
        return [c["name"] for c in inspect(conn).get_columns("agent_runner_state", place.schema)]

    async with engine.connect() as conn:
        found = await conn.run_sync(columns)
    assert found == [c.name for c in original_table(MetaData()).columns] + ["version"]
    clock = faked(backend)
    assert await backend.set(StateWrite("s", "a", "1", CTX, ttl=10)) == 1
    assert await backend.set(StateWrite("s", "b", "2", CTX)) == 1
    clock.advance(9.999)
    assert await backend.read_scopes(["s", "kept"]) == {
        "s": {"a": "1", "b": "2"},
        "kept": {"k": "1"},
    }
    clock.advance(0.001)
    assert await backend.read_scopes(["s", "kept"]) == {"s": {}, "kept": {"k": "1"}}
    assert await backend.set(StateWrite("s", "a", "3", CTX), 0) == 1  # a new scope
    assert await backend.read_scopes(["s"]) == {"s": {"a": "3"}}
    assert await backend.scope_deadline("s") is None


# ---- concurrency ------------------------------------------------------------------------


async def test_writers_racing_into_an_expired_scope_never_bring_an_old_entry_back(
    place: Place,
) -> None:
    backend = place.backend(pool_size=8)
    clock = faked(backend)
    old = [StateWrite("s", f"old{i}", "0", CTX, ttl=10) for i in range(20)]
    await backend.set_many(old)
    clock.advance(10)
    calls: list[Any] = []
    for i in range(16):
        ttl = (None, 60.0, 5.0)[i % 3]
        if i % 4 == 3:
            calls.append(backend.set_many([StateWrite("s", f"new{i}", str(i), CTX, ttl=ttl)]))
        else:
            expected = 0 if i % 5 == 0 else None
            calls.append(backend.set(StateWrite("s", f"new{i}", str(i), CTX, ttl=ttl), expected))
    calls.append(backend.sweep_expired(batch_size=3))
    await asyncio.gather(*calls)
    stored = await backend.read_scopes(["s"])
    assert stored == {"s": {f"new{i}": str(i) for i in range(16)}}
    for i in range(16):
        assert await backend.get_versioned("s", f"new{i}") == (str(i), 1)
    assert sorted([e.state_key async for e in backend.iter_entries()]) == sorted(
        f"new{i}" for i in range(16)
    )


# ---- the sweep under writers ------------------------------------------------------------

#: Expired entries the sweep test reclaims (the benchmark sweeps 10^5), in scopes of 10.
SWEPT_ENTRIES = 20_000
WRITERS = 16


async def test_the_sweep_reclaims_expired_rows_and_no_live_one_under_16_writers(
    place: Place, summary_line: Callable[[str], None]
) -> None:
    # Writers queue for the pool's places, first come first served (the host engine's
    # pool: 5 + 10). SQLite writes one at a time whatever the pool: with one place they
    # wait in order rather than in SQLite's busy handler, whose backoff alone makes some
    # writes wait over a second with 8 connections, sweep or not.
    backend = place.backend(pool_size=8 if place.postgres else 1)
    await backend.set(StateWrite("forever", "k", "1", CTX))
    await fill_expired(backend, SWEPT_ENTRIES)
    run = await sweep_under_writers(backend, WRITERS)
    summary_line(
        f"sweep on {'postgres' if place.postgres else 'sqlite'}: {run.swept.entries} expired "
        f"rows in {run.seconds:.2f} s ({run.swept.entries / run.seconds:,.0f} rows/s) under "
        f"{WRITERS} writers ({run.writes} writes), writers' worst latency "
        f"{run.worst_write_ms:.1f} ms"
    )
    assert (run.swept.scopes, run.swept.entries) == (SWEPT_ENTRIES // 10, SWEPT_ENTRIES)
    assert await backend.get("forever", "k") == "1"
    assert await backend.sweep_expired() == SweepResult()
