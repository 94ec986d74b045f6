"""``statekit.compat``: the original store's names, its models' defaults, and its table's
rows read as they are after a one-import switch, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import MetaData, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlsupport import DIALECTS, original_table, tables_place

from benchmarks.original import utcnow, write_entry
from statekit import compat
from statekit.backends.base import Capability
from statekit.errors import UnsupportedCapabilityError
from statekit.models import (
    ActorContext,
    AgentBinding,
    AgentEventEnvelope,
    BindingScope,
    RunnerDescriptor,
    StatePolicy,
    SubjectContext,
)
from statekit.scope import get_binding_identity

# ---- the models' defaults are the original's ----------------------------------------------


@pytest.mark.parametrize(
    ("model", "field", "original"),
    [
        (ActorContext, "actor_type", "user"),
        (ActorContext, "actor_id", None),
        (SubjectContext, "subject_type", "unknown"),
        (SubjectContext, "subject_id", None),
        (AgentEventEnvelope, "bot_id", None),
        (AgentEventEnvelope, "workspace_id", None),
        (AgentEventEnvelope, "conversation_id", None),
        (AgentEventEnvelope, "thread_id", None),
        (AgentEventEnvelope, "actor", None),
        (AgentEventEnvelope, "subject", None),
        (BindingScope, "scope_type", "pipeline"),
        (BindingScope, "scope_id", None),
        (StatePolicy, "enable_state", True),
        (StatePolicy, "state_scopes", ["conversation", "actor"]),
        (AgentBinding, "binding_id", None),
        (AgentBinding, "state_policy", StatePolicy()),
    ],
)
def test_every_model_default_is_the_originals(model: Any, field: str, original: Any) -> None:
    assert getattr(model(), field) == original


def test_every_default_of_the_models_is_checked() -> None:
    checked = {
        ActorContext: {"actor_type", "actor_id"},
        SubjectContext: {"subject_type", "subject_id"},
        AgentEventEnvelope: {
            "bot_id", "workspace_id", "conversation_id", "thread_id", "actor", "subject"
        },
        BindingScope: {"scope_type", "scope_id"},
        StatePolicy: {"enable_state", "state_scopes"},
        AgentBinding: {"binding_id", "scope", "state_policy"},
        RunnerDescriptor: set(),  # id is required
    }  # fmt: skip
    for model, fields in checked.items():
        model_fields: dict[str, Any] = model.model_fields  # type: ignore[attr-defined]
        defaulted = {n for n, f in model_fields.items() if not f.is_required()}
        assert defaulted <= fields | {"scope"}, model  # a new default needs its test above


def test_a_binding_without_an_id_is_identified_by_its_pipeline_scope() -> None:
    for binding_id in (None, ""):
        binding = AgentBinding(binding_id=binding_id, scope=BindingScope(scope_id="p1"))
        assert get_binding_identity(binding) == "pipeline:p1"
    assert get_binding_identity(AgentBinding()) == "unknown_binding"
    assert get_binding_identity(AgentBinding(scope=BindingScope())) == "unknown_binding"


# ---- the API --------------------------------------------------------------------------------


def test_the_original_names_and_signatures() -> None:
    assert compat.MAX_VALUE_JSON_BYTES == 256 * 1024
    init = inspect.signature(compat.PersistentStateStore.__init__)
    assert list(init.parameters)[:2] == ["self", "db_engine"]
    getter = inspect.signature(compat.get_persistent_state_store)
    assert list(getter.parameters) == ["db_engine"]
    assert getter.parameters["db_engine"].default is None
    assert list(inspect.signature(compat.reset_persistent_state_store).parameters) == []
    for method, parameters in {
        "build_snapshot_from_event": ["event", "binding", "descriptor"],
        "apply_update_from_event": [
            "event", "binding", "descriptor", "scope", "key", "value", "logger"
        ],
        "state_get": ["scope_key", "state_key"],
        "state_set": [
            "scope_key", "state_key", "value", "runner_id", "binding_identity", "scope",
            "context", "logger",
        ],
        "state_delete": ["scope_key", "state_key"],
        "state_list": ["scope_key", "prefix", "limit"],
        "clear_all": [],
    }.items():  # fmt: skip
        found = list(inspect.signature(getattr(compat.PersistentStateStore, method)).parameters)
        assert found[1 : 1 + len(parameters)] == parameters, method


@pytest.mark.sqlite
async def test_the_singleton_behaves_as_the_originals(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    compat.reset_persistent_state_store()
    try:
        with pytest.raises(RuntimeError, match="db_engine required for first call"):
            compat.get_persistent_state_store()
        store = compat.get_persistent_state_store(engine)
        assert isinstance(store, compat.PersistentStateStore)
        assert compat.get_persistent_state_store() is store
        assert compat.get_persistent_state_store(engine) is store
        compat.reset_persistent_state_store()
        assert compat.get_persistent_state_store(engine) is not store
    finally:
        compat.reset_persistent_state_store()
        await engine.dispose()


# ---- the original store's rows, after the switch --------------------------------------------


def original_scope_key(scope: str, identity: dict[str, Any]) -> str:
    """The original key format (DESIGN.md), computed here, not by statekit."""
    canonical = json.dumps(
        {"version": 2, "scope": scope, **identity},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return f"{scope}:v2:{hashlib.sha256(canonical.encode()).hexdigest()}"


async def original_set(
    engine: AsyncEngine, table: Table, scope_key: str, key: str, value: Any, **row: Any
) -> None:
    """The original store's write of ``value``: select, then update by id or insert."""
    await write_entry(engine, table, scope_key, key, json.dumps(value, ensure_ascii=False), **row)


@pytest_asyncio.fixture(params=DIALECTS)
async def host(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[AsyncEngine, str | None]]:
    """The host's engine with the original table (PostgreSQL: in a private schema)."""
    async with tables_place(request.param, tmp_path) as (url, schema):
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(original_table(MetaData(), schema).create)
        yield engine, schema
        await engine.dispose()


# The host's own models before the switch: binding without an id, in pipeline p1.
HOST_EVENT = SimpleNamespace(
    bot_id="bot-1", workspace_id="ws-1", conversation_id="c-42", thread_id=None,
    actor=SimpleNamespace(actor_type="user", actor_id="u-7"), subject=None,
)  # fmt: skip
IDENTITY = {"runner_id": "summariser", "binding_identity": "pipeline:p1"}
IDENTITY |= {"bot_id": "bot-1", "workspace_id": "ws-1"}
ACTOR_KEY = original_scope_key("actor", {**IDENTITY, "actor_type": "user", "actor_id": "u-7"})
CONVERSATION_KEY = original_scope_key(
    "conversation", {**IDENTITY, "conversation_id": "c-42", "thread_id": None}
)


async def write_as_the_original(engine: AsyncEngine, table: Table) -> datetime:
    context = {"runner_id": "summariser", "binding_identity": "pipeline:p1", "bot_id": "bot-1"}
    context |= {"workspace_id": "ws-1", "conversation_id": "c-42", "actor_id": "u-7"}
    await original_set(
        engine, table, ACTOR_KEY, "profile", {"lang": "fr"}, scope="actor", **context
    )
    await original_set(engine, table, ACTOR_KEY, "visits", 1, scope="actor", **context)
    await original_set(engine, table, ACTOR_KEY, "visits", 2, scope="actor", **context)
    await original_set(
        engine, table, CONVERSATION_KEY, "topic", "billing", scope="conversation", **context
    )
    async with engine.begin() as conn:  # the original table allows NULL values
        now = utcnow()
        await conn.execute(
            insert(table).values(
                scope_key=ACTOR_KEY, state_key="blank", value_json=None, scope="actor",
                created_at=now, updated_at=now, **context,
            )
        )  # fmt: skip
        created = await conn.execute(
            select(table.c.created_at).where(table.c.state_key == "profile")
        )
        moment: datetime = created.scalar_one()
        return moment


async def test_the_original_rows_are_read_updated_listed_and_deleted_after_the_switch(
    host: tuple[AsyncEngine, str | None],
) -> None:
    engine, schema = host
    table = original_table(MetaData(), schema)
    created = await write_as_the_original(engine, table)

    store = compat.PersistentStateStore(engine, schema=schema)  # the one changed import
    # statekit's own models now, relying on their defaults (scope_type "pipeline").
    event = AgentEventEnvelope(
        bot_id="bot-1", workspace_id="ws-1", conversation_id="c-42",
        actor=ActorContext(actor_id="u-7"),
    )  # fmt: skip
    binding = AgentBinding(binding_id="", scope=BindingScope(scope_id="p1"))
    runner = RunnerDescriptor(id="summariser")
    snapshot = await store.build_snapshot_from_event(event, binding, runner)
    assert snapshot["actor"] == {"profile": {"lang": "fr"}, "visits": 2}  # "blank" is absent
    assert snapshot["conversation"] == {"topic": "billing", "external.conversation_id": "c-42"}
    # The host's own models give the same scopes.
    assert await store.build_snapshot_from_event(HOST_EVENT, binding, runner) == snapshot

    assert await store.state_get(ACTOR_KEY, "visits") == 2
    assert await store.state_get(ACTOR_KEY, "blank") is None
    assert await store.apply_update_from_event(event, binding, runner, "actor", "visits", 3) == (
        True,
        None,
    )
    assert await store.state_set(ACTOR_KEY, "profile", {"lang": "de"}, "summariser",
                                 "pipeline:p1", "actor") == (True, None)  # fmt: skip
    assert await store.state_list(ACTOR_KEY) == (["profile", "visits"], False)
    assert await store.state_list(ACTOR_KEY, prefix="vis") == (["visits"], False)
    assert await store.state_delete(ACTOR_KEY, "visits") is True
    assert await store.state_delete(ACTOR_KEY, "visits") is False
    entries = {e.state_key: e async for e in store.export()}
    assert set(entries) == {"profile", "topic"}
    # Updated in place: the original's created_at (naive UTC) is kept and read as UTC.
    assert entries["profile"].created_at == created.replace(tzinfo=timezone.utc)
    assert entries["profile"].updated_at > entries["profile"].created_at
    assert entries["profile"].context.runner_id == "summariser"

    async with engine.connect() as conn:  # what the original would read back
        rows = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        value_json = (
            await conn.execute(select(table.c.value_json).where(table.c.state_key == "profile"))
        ).scalar_one()
    assert rows == 3  # profile, topic, blank: no duplicate row was added
    assert json.loads(value_json) == {"lang": "de"}

    assert Capability.VERSIONS not in store.backend.capabilities
    with pytest.raises(UnsupportedCapabilityError):
        await store.state_get_versioned(ACTOR_KEY, "profile")
    await store.aclose()
    async with engine.connect() as conn:  # the host's engine is still the host's
        assert (await conn.execute(select(func.count()).select_from(table))).scalar_one() == 3


async def test_statekit_init_gives_the_original_table_versions(
    host: tuple[AsyncEngine, str | None],
) -> None:
    engine, schema = host
    await write_as_the_original(engine, original_table(MetaData(), schema))
    store = compat.PersistentStateStore(engine, schema=schema)
    backend: Any = store.backend
    changes = await backend.upgrade_schema()
    assert any("version" in change for change in changes)
    assert await store.state_get_versioned(ACTOR_KEY, "visits") == (2, 1)
    ok = await store.state_set(
        ACTOR_KEY, "visits", 3, "summariser", "pipeline:p1", "actor", expected_version=1
    )
    assert ok == (True, None)
    assert await store.state_get_versioned(ACTOR_KEY, "visits") == (3, 2)
    await store.aclose()
