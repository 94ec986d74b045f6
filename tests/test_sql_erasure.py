"""Erasure on the SQL backend beyond the contract: the identity indexes (created with a new
table, added by ``statekit init`` to one found without them, used by every single-field
filter), the original store's table through :mod:`statekit.compat`, what an erase
deletes beyond what it counts, and writers with deadlines racing an erase of several
batches. On a SQLite file and a private schema of the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from sqlalchemy import MetaData, inspect
from sqlsupport import DIALECTS, Place, execute, original_table, place_of

from benchmarks.sql_erasure import fill_unrelated
from statekit import StateStore
from statekit.backends.base import Capability, StateWrite
from statekit.backends.identity import IdentityFilter
from statekit.backends.sql import SQLBackend
from statekit.backends.sql.identity_sql import IDENTITY_BATCH_SIZE, field_parameter
from statekit.backends.sql.layout import no_identity_indexes
from statekit.backends.sql.schema import IDENTITY_INDEXES, identity_index_names
from statekit.backends.sql.upgrade import CREATE_IDENTITY_INDEXES
from statekit.compat import PersistentStateStore
from statekit.errors import UnsupportedCapabilityError
from statekit.testing.clocks import FakeClock
from statekit.testing.erasure_places import Place as Scope
from statekit.testing.erasure_places import base_fields, new_tag

HOUR = 3600.0


@pytest_asyncio.fixture(params=DIALECTS)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    async with place_of(request.param, tmp_path, "state.db") as place:
        yield place


async def _index_names(place: Place, table: str) -> set[str]:
    engine = place.engine()

    def names(conn: Any) -> set[str]:
        return {str(i["name"]) for i in inspect(conn).get_indexes(table, place.schema)}

    async with engine.connect() as conn:
        return await conn.run_sync(names)


async def _without_indexes(place: Place) -> SQLBackend:
    """statekit's table with an actor's scope, its identity indexes dropped; a backend
    over it that creates nothing."""
    first = place.backend()
    await first.set_many(Scope.of("actor", base_fields("kept")).writes(2))
    await first.aclose()
    drops = [f"DROP INDEX {place.name(name)}" for name in identity_index_names("statekit_state")]
    await execute(place.url, *drops)
    return place.backend(create_schema=False)


# ---- the indexes ---------------------------------------------------------------------


async def test_a_new_table_has_every_identity_index(place: Place) -> None:
    backend = place.backend()
    await backend.create_schema()
    assert set(identity_index_names("statekit_state")) <= await _index_names(
        place, "statekit_state"
    )
    assert (await backend.describe()).warnings == ()
    assert Capability.ERASURE in backend.capabilities


async def test_a_table_without_identity_indexes_is_served_without_erasure(place: Place) -> None:
    backend = await _without_indexes(place)
    info = await backend.describe()
    assert info.layout == "ok"
    assert info.warnings == (no_identity_indexes(identity_index_names("statekit_state")),)
    assert Capability.ERASURE not in backend.capabilities
    identity = IdentityFilter({"actor_id": "kept.actor_id"})
    with pytest.raises(UnsupportedCapabilityError, match="statekit init"):
        await backend.erase(identity)
    with pytest.raises(UnsupportedCapabilityError, match="statekit init"):
        [info async for info in backend.find_scopes(identity)]
    with pytest.raises(UnsupportedCapabilityError, match="statekit init"):
        await backend.scope_entries("any")
    store = StateStore(backend)  # not closed here: the backend is closed by the place
    with pytest.raises(UnsupportedCapabilityError, match="statekit init"):
        await store.erase(actor_id="kept.actor_id")
    await backend.create_schema()  # a table found in place keeps its indexes as they are
    assert Capability.ERASURE not in backend.capabilities
    assert len([e async for e in backend.iter_entries()]) == 2  # nothing was erased


async def test_statekit_init_adds_the_identity_indexes(place: Place) -> None:
    backend = await _without_indexes(place)
    names = identity_index_names("statekit_state")
    assert await backend.upgrade_schema() == [
        CREATE_IDENTITY_INDEXES.format(names=", ".join(names))
    ]
    assert set(names) <= await _index_names(place, "statekit_state")
    assert Capability.ERASURE in backend.capabilities
    assert (await backend.describe()).warnings == ()
    assert await backend.upgrade_schema() == []
    result = await backend.erase(IdentityFilter({"actor_id": "kept.actor_id"}))
    assert (result.scopes, result.entries) == (1, 2)


def _plan_names_index(plan: str, index: str, postgres: bool) -> bool:
    if postgres:
        return f'"Index Name": "{index}"' in plan
    return f"INDEX {index}" in plan


@pytest.mark.parametrize("field", list(IDENTITY_INDEXES))
async def test_each_single_field_filter_reads_its_index(place: Place, field: str) -> None:
    """On a table of 4,000 scopes (each id its own, runner, binding, bot and workspace
    among 100 values), with statistics, the plan of every batch a one-field filter runs
    reads that field's index."""
    backend = place.backend()
    await fill_unrelated(backend, 0, 4000, shared=100)
    await backend.describe()
    identity = IdentityFilter({field: "r7" if field == "runner_id" else "x"})
    sql = backend._require_erasure()
    index = f"ix_statekit_state_{field}"
    explain = "EXPLAIN (FORMAT JSON) " if place.postgres else "EXPLAIN QUERY PLAN "
    for scope in identity.scope_names():
        statement = sql.batch(scope, (field,))
        params = {field_parameter(field): "x", "after": "", "limit": 100, "now": 0.0}
        arguments = statement.arguments(params)
        engine = place.engine()
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            if place.postgres:
                rows = await driver.fetch(explain + statement.sql, *arguments)
            else:
                rows = await driver.execute_fetchall(explain + statement.sql, arguments)
        plan = json.dumps([list(row) for row in rows]).replace('\\"', '"')
        assert _plan_names_index(plan, index, place.postgres), f"{scope}: {plan}"
    await backend.aclose()


# ---- the original store's table ---------------------------------------------------------


async def test_the_original_table_erases_through_compat_after_statekit_init(
    place: Place,
) -> None:
    engine = place.engine()
    async with engine.begin() as conn:
        await conn.run_sync(original_table(MetaData(), place.schema).create)
    store = PersistentStateStore(engine, schema=place.schema)
    fields = base_fields(new_tag())
    person, other = Scope.of("actor", fields), Scope.of("conversation", fields)
    await store.backend.set_many(person.writes(3) + other.writes(2))
    with pytest.raises(UnsupportedCapabilityError, match="erasure"):
        await store.erase(actor_id=fields["actor_id"])
    changes = await cast(SQLBackend, store.backend).upgrade_schema()  # `statekit init`
    assert any(change.startswith("add the identity indexes") for change in changes)
    exported = [e async for e in store.export(actor_id=fields["actor_id"])]
    assert {e.state_key for e in exported} == {"k0", "k1", "k2"}
    result = await store.erase(actor_id=fields["actor_id"], actor_type=fields["actor_type"])
    assert (result.scopes, result.entries) == (1, 3)
    left = await store.backend.read_scopes([person.key, other.key])
    assert left == {
        person.key: {},
        other.key: {"k0": json.dumps([other.key, 0]), "k1": json.dumps([other.key, 1])},
    }
    await store.aclose()


async def test_null_rows_of_the_original_table_are_erased_and_never_counted(
    place: Place,
) -> None:
    engine = place.engine()
    async with engine.begin() as conn:
        await conn.run_sync(original_table(MetaData(), place.schema).create)
    backend = place.backend(engine, table_name="agent_runner_state", create_schema=False)
    await backend.upgrade_schema()
    fields = base_fields(new_tag())
    alive, hollow = Scope.of("subject", fields), Scope.of("runner", fields)
    await backend.set_many(alive.writes(2) + hollow.writes(1))
    table = place.name("agent_runner_state")
    await execute(
        place.url,
        f"UPDATE {table} SET value_json = NULL WHERE state_key = 'k1' OR scope = 'runner'",
    )
    identity = IdentityFilter({"workspace_id": fields["workspace_id"]})
    found = {info.scope_key: info.entries async for info in backend.find_scopes(identity)}
    assert found == {alive.key: 1}  # the runner scope holds no value: absent
    result = await backend.erase(identity)
    assert (result.scopes, result.entries) == (1, 1)
    assert await execute(place.url, f"SELECT 1 FROM {table}") == 0  # the NULL rows went too
    await backend.aclose()


# ---- what an erase deletes ---------------------------------------------------------------


async def test_an_expired_matching_scope_is_deleted_but_not_counted(place: Place) -> None:
    backend = place.backend()
    clock = FakeClock()
    backend.clock = clock
    fields = base_fields(new_tag())
    gone = Scope.of("actor", fields)
    live = Scope.of("actor", {**fields, "runner_id": fields["runner_id"] + ".2"})
    await backend.set_many(gone.writes(3, ttl=HOUR) + live.writes(1))
    clock.advance(2 * HOUR)
    result = await backend.erase(IdentityFilter({"actor_id": fields["actor_id"]}))
    assert (result.scopes, result.entries) == (1, 1)
    for table in ("statekit_state", "statekit_state_scopes"):
        rows = await execute(place.url, f"SELECT 1 FROM {place.name(table)}")
        assert rows == 0, f"{table} still holds the expired scope"
    await backend.aclose()


# ---- writers racing an erase -------------------------------------------------------------


async def test_writers_with_deadlines_racing_an_erase_of_several_batches(place: Place) -> None:
    """Writers moving their scopes' deadlines (PostgreSQL locks each scope's row, as the
    erase does) and writing several scopes at once, while an erase of three batches runs:
    nothing fails, nothing written before survives, everything written after does."""
    backend = place.backend()
    fields = base_fields(new_tag())
    count = 2 * IDENTITY_BATCH_SIZE + 50
    scopes = [
        Scope.of("actor", {**fields, "runner_id": f"{fields['runner_id']}.{n}"})
        for n in range(count)
    ]
    await backend.set_many([w for s in scopes for w in s.writes(1, ttl=HOUR)])
    phase = "before"
    progress = asyncio.Condition()
    written: dict[str, list[tuple[str, str]]] = {"before": [], "during": [], "after": []}

    async def writer(number: int) -> None:
        n = 0
        while phase != "done":
            began = phase
            targets = [scopes[(number * 37 + n * 11 + i) % count] for i in range(3)]
            writes = [StateWrite(s.key, f"w{number}.{n}", "1", s.context, HOUR) for s in targets]
            await backend.set_many(writes)
            ended = phase
            kind = "before" if ended == "before" else "after" if began == "after" else "during"
            written[kind] += [(w.scope_key, w.state_key) for w in writes]
            n += 1
            async with progress:
                progress.notify_all()

    tasks = [asyncio.create_task(writer(n)) for n in range(4)]
    async with progress:
        await progress.wait_for(lambda: len(written["before"]) >= 24)
    phase = "during"
    result = await backend.erase(IdentityFilter({"actor_id": fields["actor_id"]}))
    phase = "after"
    async with progress:
        await progress.wait_for(lambda: len(written["after"]) >= 24)
    phase = "done"
    await asyncio.gather(*tasks)
    assert result.scopes >= count - 4 * 3  # a scope written during may be erased later
    held = await backend.read_scopes([s.key for s in scopes])
    left = {(key, state_key) for key, entries in held.items() for state_key in entries}
    assert not left & set(written["before"])
    assert set(written["after"]) <= left
    assert not any(state_key == "k0" for _, state_key in left)  # the first entries went
    await backend.aclose()
