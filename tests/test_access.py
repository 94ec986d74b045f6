"""Access and erasure requests through the store: ``find_scopes``, ``export`` and
``erase`` by identity, the filters refused before any I/O, and the audit record."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from statekit import (
    InvalidFilterError,
    MemoryBackend,
    StateStore,
    StoreClosedError,
    UnsupportedCapabilityError,
)
from statekit.testing import Identity, new_identity
from statekit.testing.identities import put


@pytest.fixture
async def store() -> AsyncIterator[StateStore]:
    async with StateStore(MemoryBackend()) as store:
        yield store


async def _everywhere(store: StateStore, ident: Identity) -> None:
    """One value in each of ``ident``'s four scopes, written from its event."""
    for scope in ("conversation", "actor", "subject", "runner"):
        ok = await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, scope, "k", scope
        )
        assert ok == (True, None)


async def _keys(store: StateStore, **identity: object) -> set[str]:
    return {info.scope_key async for info in store.find_scopes(**identity)}


async def test_erase_by_actor_removes_their_actor_scopes_on_every_runner_only() -> None:
    """u-7's actor scopes go on both runners; the conversations they took part in (whose
    stored context names them) stay, and go when erased by conversation id."""
    async with StateStore(MemoryBackend()) as store:
        here = new_identity(actor_id="u-7")
        there = new_identity(actor_id="u-7")
        someone = new_identity(actor_id="u-70")
        for ident in (here, there, someone):
            await _everywhere(store, ident)
        result = await store.erase(actor_id="u-7", actor_type="user")
        assert (result.scopes, result.entries, dict(result.by_scope)) == (2, 2, {"actor": 2})
        assert await store.state_get(here.scope_key("actor"), "k") is None
        assert await store.state_get(there.scope_key("actor"), "k") is None
        assert await store.state_get(someone.scope_key("actor"), "k") == "actor"
        assert await store.state_get(here.scope_key("conversation"), "k") == "conversation"
        conversation_id = here.event.conversation_id
        assert (await store.erase(conversation_id=conversation_id)).scopes == 1
        assert await store.state_get(here.scope_key("conversation"), "k") is None


async def test_find_scopes_reports_each_matching_scope(store: StateStore) -> None:
    ident = new_identity()
    await _everywhere(store, ident)
    found = [info async for info in store.find_scopes(runner_id=ident.runner_id)]
    assert {(i.scope, i.scope_key, i.entries) for i in found} == {
        (scope, ident.scope_key(scope), 1)
        for scope in ("conversation", "actor", "subject", "runner")
    }
    assert await _keys(store, runner_id=ident.runner_id, scope="subject") == {
        ident.scope_key("subject")
    }


async def test_export_without_filter_is_every_entry_and_with_one_the_matching_scopes(
    store: StateStore,
) -> None:
    one, two = new_identity(), new_identity()
    await _everywhere(store, one)
    await _everywhere(store, two)
    everything = [e async for e in store.export()]
    assert everything == [e async for e in store.backend.iter_entries()]
    assert len(everything) == 8
    mine = [e async for e in store.export(workspace_id="ws-1", runner_id=one.runner_id)]
    assert sorted(e.scope_key for e in mine) == sorted(
        one.scope_key(scope) for scope in ("conversation", "actor", "subject", "runner")
    )
    assert all(e.context.runner_id == one.runner_id and e.created_at for e in mine)


async def test_a_dry_run_counts_what_an_erase_removes_and_removes_nothing(
    store: StateStore,
) -> None:
    ident = new_identity()
    await _everywhere(store, ident)
    await put(store, ident, "second", 2)
    before = [e async for e in store.export()]
    dry = await store.erase(binding_identity=ident.binding_identity, dry_run=True)
    assert [e async for e in store.export()] == before
    real = await store.erase(binding_identity=ident.binding_identity)
    assert dry == real
    assert (real.scopes, real.entries) == (4, 5)
    assert dict(real.by_scope) == {"conversation": 1, "actor": 1, "subject": 1, "runner": 1}
    assert [e async for e in store.export()] == []


async def test_ids_given_as_numbers_match_their_text(store: StateStore) -> None:
    ok = await store.state_set(
        "actor:v2:custom", "k", 1, "r", "b", "actor", {"actor_type": "user", "actor_id": 7}
    )
    assert ok == (True, None)
    assert await _keys(store, actor_id=7, actor_type="user") == {"actor:v2:custom"}
    assert await _keys(store, actor_id="7") == {"actor:v2:custom"}


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


REFUSED: dict[str, dict[str, Any]] = {
    "empty": {},
    "scope-only": {"scope": "actor"},
    "unknown-field": {"actor": "u-7"},
    "context-only-field": {"runner": "r"},
    "none-id": {"actor_id": None},
    "none-with-another": {"actor_id": None, "workspace_id": "ws-1"},
    "empty-id": {"actor_id": ""},
    "unknown-scope": {"scope": "people", "actor_id": "u-7"},
    "type-without-id": {"actor_type": "user"},
    "subject-type-without-id": {"subject_type": "ticket", "workspace_id": "ws-1"},
    "fields-of-two-scopes": {"conversation_id": "c", "actor_id": "u-7"},
    "field-outside-the-scope": {"scope": "runner", "conversation_id": "c"},
    "no-text": {"actor_id": _Unprintable()},
}


# export() without a filter is the whole store's export, not a refusal.
REFUSED_CALLS = [
    pytest.param(call, identity, id=f"{name}-{call}")
    for call in ("find_scopes", "export", "erase", "dry_run")
    for name, identity in REFUSED.items()
    if identity or call != "export"
]


@pytest.mark.parametrize(("call", "identity"), REFUSED_CALLS)
async def test_a_refused_filter_raises_before_any_io(
    store: StateStore, identity: dict[str, Any], call: str
) -> None:
    ident = new_identity()
    await _everywhere(store, ident)
    before = [e async for e in store.export()]

    async def attempt() -> object:
        if call == "find_scopes":
            return store.find_scopes(**identity)  # refused at the call, before iterating
        if call == "export":
            return store.export(**identity)
        return await store.erase(**identity, dry_run=call == "dry_run")

    with pytest.raises(InvalidFilterError) as refused:
        await attempt()
    assert isinstance(refused.value, ValueError)
    assert [e async for e in store.export()] == before


class _NoErasure(MemoryBackend):
    capabilities = frozenset()


async def test_a_backend_without_erasure_refuses_filters_but_exports() -> None:
    async with StateStore(_NoErasure()) as store:
        await _everywhere(store, new_identity())
        with pytest.raises(UnsupportedCapabilityError, match="ERASURE"):
            store.find_scopes(actor_id="u-7")
        with pytest.raises(UnsupportedCapabilityError):
            store.export(actor_id="u-7")
        with pytest.raises(UnsupportedCapabilityError):
            await store.erase(actor_id="u-7", dry_run=True)
        assert len([e async for e in store.export()]) == 4


async def test_a_closed_store_refuses_access_requests() -> None:
    store = StateStore(MemoryBackend())
    await store.aclose()
    with pytest.raises(StoreClosedError):
        store.find_scopes(actor_id="u-7")
    with pytest.raises(StoreClosedError):
        await store.erase(actor_id="u-7")


async def test_each_erase_logs_one_audit_record_without_the_ids(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    ident = new_identity(actor_id="u-secret-7")
    await _everywhere(store, ident)
    caplog.set_level(logging.DEBUG, logger="statekit")
    await store.erase(actor_id="u-secret-7", workspace_id="ws-secret", dry_run=True)
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    await store.erase(actor_id="u-secret-7", actor_type="user", scope="actor")
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(records) == 1
    record = records[0]
    assert (record.name, record.levelno) == ("statekit", logging.INFO)
    message = record.getMessage()
    assert (
        message
        == "erased 1 scope(s) with 1 entries, filtered by actor_id, actor_type (scope actor)"
    )
    audit = getattr(record, "statekit_erasure", None)
    assert audit == {
        "fields": ["actor_id", "actor_type"],
        "scope": "actor",
        "scopes": 1,
        "entries": 1,
        "by_scope": {"actor": 1},
    }
    assert "u-secret-7" not in repr(vars(record))
    assert "user" not in f"{message} {record.args} {audit}"
