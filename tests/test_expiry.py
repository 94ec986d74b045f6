"""Expiry through the store, on the memory backend with a fake clock: which calls pass a
lifetime, per-call overrides, refresh on read, introspection and sweeping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pytest

import statekit
from statekit import NEVER, MemoryBackend, StateStore, SweepResult
from statekit.backends.base import StateWrite
from statekit.expiry import Duration
from statekit.testing import FakeClock
from statekit.testing.identities import Identity, new_identity, put

pytestmark = pytest.mark.memory

POLICY: dict[str, Duration] = {"conversation": 60, "subject": "1h"}


class Recording(MemoryBackend):
    """Memory, remembering the ttl of every call that can carry one."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.calls: list[tuple[str, float | None]] = []

    async def set(self, write: StateWrite, expected_version: int | None = None) -> int:
        self.calls.append(("set", write.ttl))
        return await super().set(write, expected_version)

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        self.calls.extend(("set_many", w.ttl) for w in writes)
        for w in writes:
            await super().set(w)

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        self.calls.append(("get", ttl))
        return await super().get(scope_key, state_key, ttl)

    async def get_versioned(
        self, scope_key: str, state_key: str, ttl: float | None = None
    ) -> tuple[str | None, int]:
        self.calls.append(("get_versioned", ttl))
        return await super().get_versioned(scope_key, state_key, ttl)

    async def read_scopes(
        self, scope_keys: Sequence[str], ttls: Mapping[str, float] | None = None
    ) -> dict[str, dict[str, str]]:
        self.calls.append(("read_scopes", None if ttls is None else sum(ttls.values())))
        return await super().read_scopes(scope_keys, ttls)


class _NoExpiry(MemoryBackend):
    capabilities = frozenset({statekit.Capability.VERSIONS})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ident() -> Identity:
    return new_identity()


def at(clock: FakeClock, seconds_from_now: float) -> datetime:
    return datetime.fromtimestamp(clock() + seconds_from_now, timezone.utc)


async def apply(store: StateStore, ident: Identity, scope: str, key: str, value: Any) -> None:
    ok = await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, scope, key, value
    )
    assert ok == (True, None)


# ---- writes ----------------------------------------------------------------------------


async def test_event_writes_give_each_scope_its_configured_lifetime(
    clock: FakeClock, ident: Identity
) -> None:
    store = StateStore(MemoryBackend(clock=clock), expiry=POLICY)
    await apply(store, ident, "conversation", "k", 1)
    await apply(store, ident, "actor", "k", 2)
    results = await store.apply_updates_from_event(
        ident.event, ident.binding, ident.descriptor, [("subject", "k", 3), ("runner", "k", 4)]
    )
    assert results == [(True, None), (True, None)]
    assert await store.scope_expiry(ident.scope_key("conversation")) == at(clock, 60)
    assert await store.scope_expiry(ident.scope_key("subject")) == at(clock, 3600)
    assert await store.scope_expiry(ident.scope_key("actor")) is None
    assert await store.scope_expiry(ident.scope_key("runner")) is None
    clock.advance(60)
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert snapshot["conversation"] == {"external.conversation_id": ident.event.conversation_id}
    assert snapshot["actor"] == {"k": 2}
    assert snapshot["subject"] == {"k": 3}


async def test_every_accepted_write_slides_the_whole_scope(
    clock: FakeClock, ident: Identity
) -> None:
    store = StateStore(MemoryBackend(clock=clock), expiry=POLICY)
    await put(store, ident, "a", 1)
    clock.advance(45)
    await apply(store, ident, "conversation", "b", 2)
    assert await store.scope_expiry(ident.scope_key()) == at(clock, 60)
    clock.advance(59.999)
    assert await store.read_scope(ident.scope_key()) == {"a": 1, "b": 2}
    clock.advance(0.001)
    assert await store.read_scope(ident.scope_key()) == {}
    assert await store.state_list(ident.scope_key()) == ([], False)


async def test_a_write_after_expiry_restarts_at_version_one(
    clock: FakeClock, ident: Identity
) -> None:
    store = StateStore(MemoryBackend(clock=clock), expiry=POLICY)
    await put(store, ident, "a", 1)
    await put(store, ident, "a", 2)
    clock.advance(60)
    assert await put(store, ident, "a", 3, expected_version=0) == (True, None)
    assert await store.state_get_versioned(ident.scope_key(), "a") == (3, 1)


async def test_state_set_expiry_overrides_the_scopes_lifetime_for_one_write(
    clock: FakeClock, ident: Identity
) -> None:
    store = StateStore(MemoryBackend(clock=clock), expiry=POLICY)
    key = ident.scope_key()
    args = (ident.runner_id, ident.binding_identity, "conversation")
    assert await store.state_set(key, "a", 1, *args, expiry="5m") == (True, None)
    assert await store.scope_expiry(key) == at(clock, 300)
    assert await store.state_set(key, "a", 1, *args, expiry="never") == (True, None)
    assert await store.scope_expiry(key) is None
    assert await store.state_set(key, "a", 1, *args, expiry=NEVER) == (True, None)
    assert await store.state_set(key, "a", 2, *args) == (True, None)  # the policy again
    assert await store.scope_expiry(key) == at(clock, 60)


@pytest.mark.parametrize("bad", [0, -5, "soon", "0s", True])
async def test_a_bad_per_call_expiry_is_refused_and_writes_nothing(
    clock: FakeClock, ident: Identity, bad: Any
) -> None:
    store = StateStore(MemoryBackend(clock=clock))
    ok, error = await store.state_set(
        ident.scope_key(), "a", 1, ident.runner_id, ident.binding_identity, "conversation",
        expiry=bad,
    )  # fmt: skip
    assert not ok
    assert error is not None
    assert error.startswith("expiry: ")
    assert await store.state_get(ident.scope_key(), "a") is None


async def test_a_per_call_expiry_on_a_backend_without_expiry_raises(ident: Identity) -> None:
    store = StateStore(_NoExpiry())
    with pytest.raises(statekit.UnsupportedCapabilityError, match="expiry"):
        await store.state_set(
            ident.scope_key(), "a", 1, ident.runner_id, ident.binding_identity, "conversation",
            expiry=60,
        )  # fmt: skip
    assert await store.state_get(ident.scope_key(), "a") is None


async def test_a_store_without_expiry_passes_no_lifetime(clock: FakeClock, ident: Identity) -> None:
    backend = Recording(clock)
    store = StateStore(backend, refresh_on_read=True)  # refresh, but nothing to refresh
    await put(store, ident, "a", 1)
    await apply(store, ident, "conversation", "b", 2)
    await store.apply_updates_from_event(
        ident.event, ident.binding, ident.descriptor, [("conversation", "c", 3)]
    )
    await store.state_get(ident.scope_key(), "a")
    await store.state_get_versioned(ident.scope_key(), "a")
    await store.read_scope(ident.scope_key())
    await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert {ttl for _, ttl in backend.calls} == {None}
    assert await store.scope_expiry(ident.scope_key()) is None


# ---- reads -----------------------------------------------------------------------------


async def test_reads_move_no_deadline_by_default(clock: FakeClock, ident: Identity) -> None:
    backend = Recording(clock)
    store = StateStore(backend, expiry=POLICY)
    await put(store, ident, "a", 1)
    clock.advance(30)
    await store.state_get(ident.scope_key(), "a")
    await store.state_get_versioned(ident.scope_key(), "a")
    await store.read_scope(ident.scope_key())
    await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    await store.state_list(ident.scope_key())
    assert [ttl for name, ttl in backend.calls if name != "set"] == [None] * 4
    assert await store.scope_expiry(ident.scope_key()) == at(clock, 30)


@pytest.mark.parametrize("read", ["state_get", "state_get_versioned", "read_scope", "snapshot"])
async def test_refresh_on_read_moves_the_deadline(
    clock: FakeClock, ident: Identity, read: str
) -> None:
    store = StateStore(MemoryBackend(clock=clock), expiry=POLICY, refresh_on_read=True)
    await put(store, ident, "a", 1)
    await put(store, ident, "a", 1, "actor")  # no lifetime: a read gives it none
    clock.advance(30)
    scope_key = ident.scope_key()
    if read == "snapshot":
        await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    elif read == "read_scope":
        assert await store.read_scope(scope_key) == {"a": 1}
        await store.read_scope(ident.scope_key("actor"))
    else:
        await getattr(store, read)(scope_key, "a")
        await getattr(store, read)(ident.scope_key("actor"), "a")
    assert await store.scope_expiry(scope_key) == at(clock, 60)
    assert await store.scope_expiry(ident.scope_key("actor")) is None


async def test_listing_and_introspection_never_refresh(clock: FakeClock, ident: Identity) -> None:
    store = StateStore(MemoryBackend(clock=clock), expiry=POLICY, refresh_on_read=True)
    await put(store, ident, "a", 1)
    clock.advance(30)
    await store.state_list(ident.scope_key())
    assert await store.scope_expiry(ident.scope_key()) == at(clock, 30)


async def test_scope_expiry_of_an_invalid_key_or_a_backend_without_expiry_is_none(
    ident: Identity,
) -> None:
    assert await StateStore(MemoryBackend()).scope_expiry("") is None
    store = StateStore(_NoExpiry())
    await put(store, ident, "a", 1)
    assert await store.scope_expiry(ident.scope_key()) is None


# ---- sweeping --------------------------------------------------------------------------


async def test_sweep_expired_reclaims_and_counts(clock: FakeClock) -> None:
    store = StateStore(MemoryBackend(clock=clock), expiry=POLICY)
    old, young, forever = new_identity(), new_identity(), new_identity()
    await put(store, old, "a", 1)
    await put(store, old, "b", 1)
    await put(store, forever, "a", 1, "actor")
    clock.advance(30)
    await put(store, young, "a", 1)
    clock.advance(30)
    assert await store.sweep_expired(batch_size=1) == SweepResult(scopes=1, entries=2)
    assert await store.sweep_expired() == SweepResult()
    assert await store.state_get(young.scope_key(), "a") == 1
    assert await store.state_get(forever.scope_key("actor"), "a") == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
async def test_sweep_expired_refuses_a_bad_batch_size(bad: Any) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await StateStore(MemoryBackend()).sweep_expired(batch_size=bad)


async def test_a_backend_without_expiry_has_nothing_to_sweep() -> None:
    assert await StateStore(_NoExpiry()).sweep_expired() == SweepResult()
