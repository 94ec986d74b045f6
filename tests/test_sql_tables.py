"""Which tables the SQL backend uses, and how: names, schemas, a table found in place
(the original store's), timestamps under any session time zone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import MetaData, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlsupport import DIALECTS, Place, execute, original_table, place_of

from statekit import StateStore
from statekit.backends.base import Capability, ScopeContext, StateWrite
from statekit.backends.sql import SQLBackend, state_table
from statekit.backends.sql.layout import NO_VERSION_COLUMN
from statekit.errors import ConfigurationError, UnsupportedCapabilityError
from statekit.validation import MAX_SCOPE_KEY_LENGTH

CTX = ScopeContext("runner-1", "binding-1", "conversation", bot_id="bot-1")
PG_URL = "postgresql+asyncpg://u@localhost/db"  # for checks made before any I/O


@pytest_asyncio.fixture(params=DIALECTS)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    async with place_of(request.param, tmp_path) as place:
        yield place


async def original(place: Place, **connect_args: Any) -> tuple[AsyncEngine, SQLBackend]:
    """A host engine with the original store's table, and a backend over that table."""
    engine = place.engine(**connect_args)
    async with engine.begin() as conn:
        await conn.run_sync(original_table(MetaData(), place.schema).create)
    backend = place.backend(engine, table_name="agent_runner_state", create_schema=False)
    return engine, backend


# ---- names --------------------------------------------------------------------------


@pytest.mark.parametrize("url", [PG_URL, "sqlite+aiosqlite:///state.db"])
@pytest.mark.parametrize("name", ["Victim", "VICTIM", "victIm", "a-b", "1st", "état", "a b"])
def test_table_names_other_than_lower_case_identifiers_are_refused(url: str, name: str) -> None:
    # SQLite compares names without regard to case: "Victim" would be the table "victim".
    with pytest.raises(ConfigurationError, match="lower-case identifier"):
        SQLBackend.from_url(url, table_name=name)
    with pytest.raises(ConfigurationError, match="lower-case identifier"):
        SQLBackend(create_async_engine(url), table_name=name)


@pytest.mark.sqlite
async def test_a_table_differing_only_by_case_cannot_reach_another_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    victim = SQLBackend.from_url(url, table_name="victim")
    try:
        await victim.set(StateWrite("s", "k", '"mine"', CTX))
        with pytest.raises(ConfigurationError):
            SQLBackend.from_url(url, table_name="Victim")
        assert await victim.get("s", "k") == '"mine"'
    finally:
        await victim.aclose()


@pytest.mark.parametrize("url", [PG_URL, "sqlite+aiosqlite:///state.db"])
@pytest.mark.parametrize(
    "name", ["pg_class", "pg_anything", "sqlite_master", "sqlite_sequence", "information_schema"]
)
def test_system_catalog_names_are_refused(url: str, name: str) -> None:
    with pytest.raises(ConfigurationError, match="reserved for the database's system catalogs"):
        SQLBackend.from_url(url, table_name=name)


@pytest.mark.parametrize("schema", ["pg_catalog", "pg_toast", "information_schema", "Tenant"])
def test_system_and_mixed_case_schemas_are_refused(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="schema name"):
        SQLBackend.from_url(PG_URL, schema=schema)


@pytest.mark.sqlite
async def test_sqlite_master_is_a_configuration_error_not_an_outage(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(ConfigurationError):
            SQLBackend(engine, table_name="sqlite_master", create_schema=False)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("url", [PG_URL, "sqlite+aiosqlite:///state.db"])
def test_a_name_whose_derived_names_exceed_63_characters_is_refused_at_construction(
    url: str,
) -> None:
    # uq_<table>_scope_key_state_key has 23 characters more than the table's name.
    with pytest.raises(ConfigurationError, match="use at most 40 characters"):
        SQLBackend.from_url(url, table_name="t" * 41)
    with pytest.raises(ConfigurationError, match="at most 63"):
        SQLBackend.from_url(url, table_name="t" * 64)


@pytest.mark.postgres
@pytest.mark.parametrize("place", ["postgres"], indirect=True)
async def test_the_longest_accepted_table_name_is_created_and_used(place: Place) -> None:
    backend = place.backend(place.engine(), table_name="t" * 40)
    assert await backend.set(StateWrite("s", "k", '"v"', CTX)) == 1
    assert await backend.get("s", "k") == '"v"'
    assert (await backend.describe()).layout == "ok"


def test_postgres_tables_are_in_public_unless_told() -> None:
    assert SQLBackend.from_url(PG_URL).table_fullname == "public.statekit_state"
    assert SQLBackend.from_url(PG_URL, schema="tenant").table_fullname == "tenant.statekit_state"
    assert SQLBackend.from_url("sqlite+aiosqlite://").table_fullname == "statekit_state"


@pytest.mark.postgres
@pytest.mark.parametrize("place", ["postgres"], indirect=True)
async def test_postgres_statements_name_the_schema_whatever_the_search_path(
    place: Place,
) -> None:
    # A session whose search_path puts another schema first: unqualified statements
    # would create and use the table there (or a system catalog of that name).
    assert place.schema is not None
    name = f"t_{uuid.uuid4().hex[:8]}"
    engine = place.engine(server_settings={"search_path": place.schema})
    backend = SQLBackend(engine, table_name=name)
    try:
        await backend.set(StateWrite("s", "k", '"v"', CTX))
        async with place.engine().connect() as conn:
            query = "SELECT count(*) FROM {}.{}"
            assert (await conn.execute(text(query.format("public", name)))).scalar_one() == 1
            found = await conn.execute(text(f"SELECT to_regclass('\"{place.schema}\".{name}')"))
            assert found.scalar_one() is None
    finally:
        await execute(place.url, f"DROP TABLE IF EXISTS public.{name}")


# ---- the original store's table, as it is ---------------------------------------------


async def test_the_original_table_is_read_and_written_as_it_is(place: Place) -> None:
    _, backend = await original(place)
    store = StateStore(backend)
    assert await store.state_set("sk", "k", {"a": 1}, "r", "b", "actor") == (True, None)
    assert await store.state_get("sk", "k") == {"a": 1}
    assert await store.state_set("sk", "k", 2, "r", "b", "actor") == (True, None)
    assert await store.state_list("sk") == (["k"], False)
    assert [(e.state_key, e.version) async for e in store.export()] == [("k", 0)]
    assert backend.capabilities == frozenset()  # known since the first call
    with pytest.raises(UnsupportedCapabilityError):
        await store.state_get_versioned("sk", "k")
    with pytest.raises(UnsupportedCapabilityError):
        await store.state_set("sk", "k", 3, "r", "b", "actor", expected_version=1)
    assert await store.state_delete("sk", "k") is True
    info = await store.describe()
    assert info.layout == "ok"
    assert NO_VERSION_COLUMN in info.warnings
    assert any("collation" in w for w in info.warnings) is place.postgres


async def test_a_versioned_first_call_on_a_table_without_versions_is_a_capability_error(
    place: Place,
) -> None:
    _, backend = await original(place)
    assert Capability.VERSIONS in backend.capabilities  # statekit's table, until seen
    with pytest.raises(UnsupportedCapabilityError, match="no version column"):
        await backend.get_versioned("sk", "k")
    with pytest.raises(UnsupportedCapabilityError, match="no version column"):
        await backend.set(StateWrite("sk", "k", "1", CTX), 0)
    assert await backend.get("sk", "k") is None  # nothing was written


async def test_describe_tells_the_capabilities_before_any_other_call(place: Place) -> None:
    _, backend = await original(place)
    await backend.describe()
    assert backend.capabilities == frozenset()


async def _null_row(engine: AsyncEngine, place: Place, scope_key: str, state_key: str) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    async with engine.begin() as conn:
        await conn.execute(
            insert(original_table(MetaData(), place.schema)).values(
                runner_id="r", binding_identity="b", scope="actor", scope_key=scope_key,
                state_key=state_key, value_json=None, created_at=now, updated_at=now,
            )
        )  # fmt: skip


async def test_a_null_value_json_reads_as_absent(place: Place) -> None:
    engine, backend = await original(place)
    await _null_row(engine, place, "sk", "gone")
    await backend.set(StateWrite("sk", "kept", '"v"', CTX))
    assert await backend.get("sk", "gone") is None
    assert await backend.read_scopes(["sk"]) == {"sk": {"kept": '"v"'}}
    assert await backend.list_keys("sk", "", 10, None) == (["kept"], False)
    assert await backend.list_keys("sk", "g", 10, None) == ([], False)
    assert [e.state_key async for e in backend.iter_entries()] == ["kept"]
    assert await backend.delete("sk", "gone") is False  # absent: nothing to delete
    assert await backend.set(StateWrite("sk", "gone", '"back"', CTX)) == 0
    assert await backend.get("sk", "gone") == '"back"'


async def test_upgrade_schema_gives_the_original_table_versions(place: Place) -> None:
    engine, backend = await original(place)
    await backend.set(StateWrite("sk", "old", '"v"', CTX))
    await _null_row(engine, place, "sk", "gone")
    changes = await backend.upgrade_schema()
    assert changes[0].startswith("add the version column")
    assert Capability.VERSIONS in backend.capabilities
    assert await backend.get_versioned("sk", "old") == ('"v"', 1)
    assert await backend.set(StateWrite("sk", "old", '"w"', CTX), 1) == 2
    # A NULL row is absent for versions too: a write expecting "absent" takes its place.
    assert await backend.get_versioned("sk", "gone") == (None, 0)
    assert await backend.set(StateWrite("sk", "gone", '"n"', CTX), 0) >= 1
    assert await backend.get("sk", "gone") == '"n"'
    info = await backend.describe()
    assert (info.layout, info.warnings) == ("ok", ())


@pytest.mark.postgres
@pytest.mark.parametrize("place", ["postgres"], indirect=True)
async def test_a_narrow_scope_key_column_is_reported_and_widened(place: Place) -> None:
    backend = place.backend(place.engine())
    await backend.create_schema()
    await execute(
        place.url,
        f'ALTER TABLE "{place.schema}".statekit_state ALTER COLUMN scope_key TYPE VARCHAR(255)',
    )
    assert "scope_key holds fewer than the 512" in (await backend.describe()).layout
    assert await backend.upgrade_schema() == ["make scope_key VARCHAR(512)"]
    long_key = "s" * MAX_SCOPE_KEY_LENGTH
    assert await backend.set(StateWrite(long_key, "k", "1", CTX)) == 1
    assert (await backend.describe()).layout == "ok"


# ---- timestamps -----------------------------------------------------------------------


@pytest.mark.parametrize("columns", ["with time zone", "without time zone"])
async def test_timestamps_are_utc_whatever_the_session_time_zone(
    place: Place, columns: str
) -> None:
    """Asia/Shanghai is UTC+8: a local time stored in a naive column is 8 hours off."""
    shanghai = {"server_settings": {"timezone": "Asia/Shanghai"}} if place.postgres else {}
    if columns == "without time zone":
        engine, backend = await original(place, **shanghai)
        table = original_table(MetaData(), place.schema)
    else:
        engine = place.engine(**shanghai)
        backend = place.backend(engine)
        table = state_table(MetaData(), schema=place.schema)
    before = datetime.now(timezone.utc)
    await backend.set(StateWrite("sk", "k", "1", CTX))
    after = datetime.now(timezone.utc)
    async with place.engine().connect() as conn:  # a UTC session
        stored = (await conn.execute(select(table.c.created_at))).scalar_one()
    stored = stored.replace(tzinfo=timezone.utc) if stored.tzinfo is None else stored
    assert before - timedelta(seconds=1) <= stored <= after + timedelta(seconds=1)
    (entry,) = [e async for e in backend.iter_entries()]
    assert before - timedelta(seconds=1) <= entry.created_at <= after + timedelta(seconds=1)
    assert entry.created_at.utcoffset() == timedelta(0)
