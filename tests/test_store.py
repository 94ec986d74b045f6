"""StateStore behaviour that does not depend on the backend: lifecycle, singleton, duck
typing, and the reads, imports and counts the CLI and the benchmarks go through."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import pickle
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

import statekit
from statekit import (
    ImportResult,
    MemoryBackend,
    ScopeContext,
    StateEntry,
    StateStore,
    StateWrite,
    get_state_store,
    reset_state_store,
)
from statekit.testing import new_identity


def test_public_names_are_exported() -> None:
    public = {name for name in dir(statekit) if not name.startswith("_")}
    modules = {
        "access",
        "backends",
        "cli",
        "compat",
        "connection",
        "decoding",
        "environment",
        "errors",
        "events",
        "expiry",
        "json_chunks",
        "logs",
        "maintenance",
        "models",
        "scope",
        "settings",
        "store",
        "sweeper",
        "telemetry",
        "transfer",
        "url",
        "validation",
        "testing",
    }
    assert set(statekit.__all__) - {"__version__"} == public - modules


async def test_store_closes_its_backend_on_exit() -> None:
    closed = []

    class Tracked(MemoryBackend):
        async def aclose(self) -> None:
            closed.append(True)

    async with StateStore(Tracked()) as store:
        assert isinstance(store.backend, Tracked)
    assert closed == [True]


def test_process_wide_store_is_created_once_across_threads() -> None:
    reset_state_store()
    try:
        with pytest.raises(RuntimeError, match="backend is required"):
            get_state_store()
        seen: list[StateStore] = []
        threads = [
            threading.Thread(target=lambda: seen.append(get_state_store(MemoryBackend())))
            for _ in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({id(store) for store in seen}) == 1
        assert get_state_store() is seen[0]
    finally:
        reset_state_store()


async def test_host_objects_work_by_duck_typing() -> None:
    ident = new_identity()
    event = SimpleNamespace(
        bot_id=ident.event.bot_id,
        workspace_id=ident.event.workspace_id,
        conversation_id=ident.event.conversation_id,
        thread_id=None,
        actor=SimpleNamespace(
            actor_type="user", actor_id=ident.event.actor.actor_id if ident.event.actor else None
        ),
        subject=None,
    )
    binding = SimpleNamespace(
        binding_id=ident.binding.binding_id,
        scope=None,
        state_policy=SimpleNamespace(enable_state=True, state_scopes=["conversation", "actor"]),
    )
    runner = SimpleNamespace(id=ident.descriptor.id)
    store = StateStore(MemoryBackend())
    assert await store.apply_update_from_event(event, binding, runner, "actor", "k", 1) == (
        True,
        None,
    )
    # The pydantic models of the same identity address the same scope.
    assert await store.state_get(ident.scope_key("actor"), "k") == 1
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert snapshot["actor"] == {"k": 1}


async def test_refusals_are_logged_on_the_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    ident = new_identity()
    logger = logging.getLogger("host.state")
    store = StateStore(MemoryBackend())
    with caplog.at_level(logging.DEBUG, logger="host.state"):
        ok, error = await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "global", "k", 1, logger=logger
        )
    assert (ok, error) == (False, "Invalid scope: global")
    assert [r.name for r in caplog.records] == ["host.state"]
    # The record holds the refusal's class, not its message (which quotes the input).
    assert "reason=scope" in caplog.records[0].getMessage()
    assert "global" not in caplog.records[0].getMessage()


async def test_invalid_json_stored_outside_statekit_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ident = new_identity()
    backend = MemoryBackend()
    store = StateStore(backend)
    await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "actor", "ok", 1
    )
    await backend.set(
        StateWrite(
            ident.scope_key("actor"), "bad", "{not json", statekit.ScopeContext("r", "b", "actor")
        )
    )
    with caplog.at_level(logging.WARNING, logger="statekit"):
        snapshot = await store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        )
        assert await store.state_get(ident.scope_key("actor"), "bad") is None
    assert snapshot["actor"] == {"ok": 1}
    assert any("undecodable JSON" in r.getMessage() for r in caplog.records)


async def test_disabled_policy_snapshot_does_no_io() -> None:
    class Exploding(MemoryBackend):
        async def read_scopes(self, scope_keys, ttls=None):  # type: ignore[no-untyped-def]
            raise AssertionError("no read expected")

    ident = new_identity(enable_state=False)
    store = StateStore(Exploding())
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert snapshot == {"conversation": {}, "actor": {}, "subject": {}, "runner": {}}


# ---- what the CLI and the benchmarks need, through the store --------------------


class _Unversioned(MemoryBackend):
    capabilities = frozenset()


async def test_capabilities_are_the_backends_and_gate_versioned_calls() -> None:
    assert StateStore(MemoryBackend()).capabilities == {
        statekit.Capability.VERSIONS,
        statekit.Capability.EXPIRY,
        statekit.Capability.ERASURE,
    }
    store = StateStore(_Unversioned())
    assert store.capabilities == frozenset()
    with pytest.raises(statekit.UnsupportedCapabilityError):
        await store.state_get_versioned("runner:v2:x", "k")


class _CountingReads(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []

    async def read_scopes(
        self, scope_keys: Sequence[str], ttls: Mapping[str, float] | None = None
    ) -> dict[str, dict[str, str]]:
        self.reads.append(list(scope_keys))
        return await super().read_scopes(scope_keys, ttls)


async def test_read_scope_decodes_one_scope_in_code_point_order() -> None:
    ident = new_identity()
    store = StateStore(MemoryBackend())
    for key in ("é", "b", "a.1", "A"):
        await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "conversation", key, {"k": key}
        )
    scope = await store.read_scope(ident.scope_key("conversation"))
    assert list(scope) == ["A", "a.1", "b", "é"]
    assert scope["é"] == {"k": "é"}
    # A scope's own entries only: no seeded external.conversation_id, no policy.
    assert "external.conversation_id" not in scope


async def test_read_scope_of_an_empty_or_invalid_scope_is_empty() -> None:
    backend = _CountingReads()
    store = StateStore(backend)
    assert await store.read_scope("runner:v2:nothing-here") == {}
    assert backend.reads == [["runner:v2:nothing-here"]]
    for invalid in ("", "a\x00b", "x" * 513, 5):
        assert await store.read_scope(invalid) == {}  # type: ignore[arg-type]
    assert len(backend.reads) == 1  # no I/O for an invalid key


async def test_read_scope_skips_undecodable_values_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend()
    context = statekit.ScopeContext("r", "b", "runner")
    await backend.set(StateWrite("runner:v2:x", "bad", "{not json", context))
    await backend.set(StateWrite("runner:v2:x", "good", "[1]", context))
    with caplog.at_level(logging.WARNING, logger="statekit"):
        assert await StateStore(backend).read_scope("runner:v2:x") == {"good": [1]}
    messages = [r.getMessage() for r in caplog.records]
    assert any("skipped a stored value: undecodable JSON" in m for m in messages)
    assert not any("bad" in m or "runner:v2:x" in m for m in messages)  # no key, no scope


def _entry(
    scope_key: str = "runner:v2:x",
    state_key: str = "k",
    value_json: str = "1",
    context: statekit.ScopeContext | None = None,
) -> StateEntry:
    now = datetime.now(timezone.utc)
    context = context or statekit.ScopeContext("r", "b", "runner", bot_id="bot")
    return StateEntry(scope_key, state_key, value_json, context, now, now, 3)


async def test_import_writes_entries_with_their_context_re_encoded() -> None:
    store = StateStore(MemoryBackend())
    entries = [_entry(state_key="a", value_json='{ "x" : [1, 2] }'), _entry("runner:v2:y", "b")]
    result = await store.import_entries(entries)
    assert result == ImportResult(
        imported=2, skipped=0, scope_counts={"runner:v2:x": 1, "runner:v2:y": 1}
    )
    exported = {(e.scope_key, e.state_key): e async for e in store.export()}
    assert exported["runner:v2:x", "a"].value_json == '{"x":[1,2]}'
    assert exported["runner:v2:x", "a"].context == entries[0].context
    assert exported["runner:v2:x", "a"].version == 1  # a write of this store, not a copy
    assert await store.read_scope("runner:v2:y") == {"b": 1}


@pytest.mark.parametrize(
    "entry",
    [
        _entry(value_json="{not json"),
        _entry(value_json="[" * 600 + "]" * 600),
        _entry(value_json=json.dumps("x" * statekit.MAX_VALUE_JSON_BYTES)),
        _entry(scope_key=""),
        _entry(state_key="a\x00b"),
        _entry(state_key=""),
        _entry(context=statekit.ScopeContext("r", "b", "galaxy")),
        _entry(context=statekit.ScopeContext("r", "b", "runner", bot_id="x" * 256)),
        _entry(context=statekit.ScopeContext("r", "b", "runner", actor_id="a\x00")),
        _entry(context=statekit.ScopeContext(1, "b", "runner")),  # type: ignore[arg-type]
    ],
)
async def test_import_skips_what_a_write_would_refuse_and_goes_on(entry: StateEntry) -> None:
    store = StateStore(MemoryBackend())
    result = await store.import_entries([entry, _entry("runner:v2:ok")])
    assert (result.imported, result.skipped) == (1, 1)
    assert result.scope_counts == {"runner:v2:ok": 1}
    assert [(e.scope_key, e.state_key) async for e in store.export()] == [("runner:v2:ok", "k")]


class _CountingWrites(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        self.batches.append(len(writes))
        await super().set_many(writes)


async def _stream(entries: list[StateEntry]) -> AsyncIterator[StateEntry]:
    for entry in entries:
        yield entry


async def test_import_writes_in_batches_from_an_async_stream_and_re_runs_harmlessly() -> None:
    backend = _CountingWrites()
    store = StateStore(backend)
    entries = [_entry(state_key=f"k{i}", value_json=str(i)) for i in range(7)]
    first = await store.import_entries(_stream(entries), batch_size=3)
    assert backend.batches == [3, 3, 1]
    again = await store.import_entries(_stream(entries), batch_size=3)
    assert first == again == ImportResult(7, 0, {"runner:v2:x": 7})
    assert await store.read_scope("runner:v2:x") == {f"k{i}": i for i in range(7)}


async def test_import_dry_run_checks_and_counts_without_writing() -> None:
    backend = _CountingWrites()
    store = StateStore(backend)
    result = await store.import_entries([_entry(), _entry(value_json="{bad")], dry_run=True)
    assert result == ImportResult(1, 1, {"runner:v2:x": 1})
    assert backend.batches == []
    assert [e async for e in store.export()] == []


async def test_import_needs_a_positive_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await StateStore(MemoryBackend()).import_entries([_entry()], batch_size=0)


async def test_count_entries_counts_every_stored_entry_100_scopes_per_read() -> None:
    backend = _CountingReads()
    store = StateStore(backend)
    context = statekit.ScopeContext("r", "b", "runner")
    await backend.set(
        StateWrite("runner:v2:s0", "bad", "{not json", context)
    )  # counted all the same
    await store.import_entries(
        _entry(f"runner:v2:s{i}", f"k{j}") for i in range(150) for j in range(i % 3)
    )
    keys = [f"runner:v2:s{i}" for i in range(150)]
    counts = await store.count_entries([*keys, keys[0], "", "bad\x00key"])
    assert counts == {"": 0, "bad\x00key": 0, **{k: (i % 3) + (i == 0) for i, k in enumerate(keys)}}
    assert [len(read) for read in backend.reads] == [100, 50]  # duplicates read once


def test_a_state_write_is_a_frozen_dataclass_whose_init_takes_every_field() -> None:
    # Its __init__ is written out: a field added without it would go unset.
    names = [field.name for field in dataclasses.fields(StateWrite)]
    assert list(inspect.signature(StateWrite).parameters) == names
    context = ScopeContext("r", "b", "runner")
    write = StateWrite("s", "k", "1", context)
    assert write == StateWrite(scope_key="s", state_key="k", value_json="1", context=context)
    assert write.ttl is None
    assert hash(write) == hash(StateWrite("s", "k", "1", context, None))
    assert write != StateWrite("s", "k", "1", context, 5.0)
    fields = f"scope_key='s', state_key='k', value_json='1', context={context!r}, ttl=None"
    assert repr(write) == f"StateWrite({fields})"
    assert dataclasses.replace(write, ttl=5.0) == StateWrite("s", "k", "1", context, 5.0)
    assert pickle.loads(pickle.dumps(write)) == write
    with pytest.raises(dataclasses.FrozenInstanceError):
        write.ttl = 5.0  # type: ignore[misc]
