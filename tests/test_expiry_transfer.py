"""Export and import keep deadlines: a live scope keeps its deadline in the target (by the
target's clock), an expired one is not copied, and a target without expiry refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import pytest

import statekit
from statekit import MemoryBackend, StateEntry, StateStore
from statekit.testing import FakeClock
from statekit.testing.identities import Identity, new_identity, put

pytestmark = pytest.mark.memory


class _NoExpiry(MemoryBackend):
    capabilities = frozenset({statekit.Capability.VERSIONS})


async def _source(clock: FakeClock) -> tuple[StateStore, Identity, Identity, Identity]:
    """A store holding a live scope (deadline in 60 s), an expired one and an immortal one."""
    store = StateStore(MemoryBackend(clock=clock), expiry={"conversation": 60})
    live, expired, forever = new_identity(), new_identity(), new_identity()
    await put(store, expired, "a", 1)
    await put(store, expired, "b", 2)
    clock.advance(30)
    await put(store, live, "a", 3)
    await put(store, live, "b", 4)
    await put(store, forever, "a", 5, "actor")
    clock.advance(30)
    return store, live, expired, forever


async def test_export_carries_each_scopes_deadline() -> None:
    clock = FakeClock()
    store, live, _, forever = await _source(clock)
    exported = [entry async for entry in store.export()]
    deadline = datetime.fromtimestamp(clock() + 30, timezone.utc)
    by_scope = {(e.scope_key, e.state_key): e.expires_at for e in exported}
    assert by_scope == {
        (live.scope_key(), "a"): deadline,
        (live.scope_key(), "b"): deadline,
        (forever.scope_key("actor"), "a"): None,
    }


async def test_import_keeps_live_deadlines_by_the_targets_clock_and_drops_expired() -> None:
    source_clock = FakeClock()
    _, live, expired, forever = await _source(source_clock)
    deadline = datetime.fromtimestamp(source_clock() + 30, timezone.utc)
    entries = [
        StateEntry(live.scope_key(), "a", "3", _ctx(live), deadline, deadline, 1, deadline),
        StateEntry(expired.scope_key(), "a", "1", _ctx(expired), deadline, deadline, 1,
                   datetime.fromtimestamp(source_clock(), timezone.utc)),
        StateEntry(forever.scope_key("actor"), "a", "5", _ctx(forever, "actor"),
                   deadline, deadline, 1, None),
    ]  # fmt: skip
    target_clock = FakeClock(source_clock() + 10)  # ten seconds ahead of the source
    target = StateStore(MemoryBackend(clock=target_clock))
    result = await target.import_entries(entries)
    assert (result.imported, result.skipped, result.expired) == (2, 0, 1)
    assert await target.scope_expiry(live.scope_key()) == deadline
    assert await target.scope_expiry(forever.scope_key("actor")) is None
    assert await target.read_scope(expired.scope_key()) == {}
    target_clock.set(deadline.timestamp())
    assert await target.read_scope(live.scope_key()) == {}
    assert await target.read_scope(forever.scope_key("actor")) == {"a": 5}


async def test_migrating_from_a_store_keeps_deadlines_and_counts_expired() -> None:
    clock = FakeClock()
    source, live, _, _ = await _source(clock)
    target = StateStore(MemoryBackend(clock=clock))
    result = await target.import_entries(source.export())
    assert (result.imported, result.expired) == (3, 0)  # export never holds expired scopes
    assert await target.scope_expiry(live.scope_key()) == await source.scope_expiry(
        live.scope_key()
    )
    dry = await target.import_entries(
        [replace(e, expires_at=datetime.fromtimestamp(clock(), timezone.utc)) for e in
         [e async for e in source.export()]],
        dry_run=True,
    )  # fmt: skip
    assert (dry.imported, dry.expired) == (0, 3)


async def test_a_deadline_into_a_backend_without_expiry_raises_and_writes_nothing() -> None:
    clock = FakeClock()
    source = (await _source(clock))[0]
    exported = sorted([e async for e in source.export()], key=lambda e: e.expires_at is None)
    target = StateStore(_NoExpiry())
    for dry_run in (True, False):
        with pytest.raises(statekit.UnsupportedCapabilityError, match="deadline"):
            await target.import_entries(exported, dry_run=dry_run)
    assert [e async for e in target.export()] == []
    without_deadlines = [replace(e, expires_at=None) for e in exported]
    assert (await target.import_entries(without_deadlines)).imported == 3


def _ctx(ident: Identity, scope: str = "conversation") -> statekit.ScopeContext:
    return statekit.ScopeContext(ident.runner_id, ident.binding_identity, scope)
