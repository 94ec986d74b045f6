"""Versions (:attr:`~statekit.Capability.VERSIONS`): counters per entry and conditional sets.

Each test runs only on a backend that declares the capability; the store's refusal on one
that does not is statekit's own test.
"""

from __future__ import annotations

import asyncio

import pytest

from statekit.backends.base import Capability, StateBackend
from statekit.store import StateStore
from statekit.testing.identities import Identity, put, scope_entries, try_increment


class VersionsContract:
    """Mixin of :class:`~statekit.testing.StateBackendContract`: versions, where declared."""

    def require(self, backend: StateBackend, capability: Capability) -> None:
        if capability not in backend.capabilities:
            pytest.skip(f"backend does not declare {capability.value}")

    async def test_versions_start_at_one_and_grow_per_write(
        self, store: StateStore, backend: StateBackend, ident: Identity
    ) -> None:
        self.require(backend, Capability.VERSIONS)
        assert await store.state_get_versioned(ident.scope_key(), "k") == (None, 0)
        await put(store, ident, "k", "a")
        assert await store.state_get_versioned(ident.scope_key(), "k") == ("a", 1)
        await put(store, ident, "k", "b")
        assert await store.state_get_versioned(ident.scope_key(), "k") == ("b", 2)
        assert (await scope_entries(store, ident.scope_key()))["k"].version == 2

    async def test_conditional_set_refuses_a_stale_version(
        self, store: StateStore, backend: StateBackend, ident: Identity
    ) -> None:
        self.require(backend, Capability.VERSIONS)
        assert await put(store, ident, "k", "first", expected_version=0) == (True, None)
        ok, error = await put(store, ident, "k", "again", expected_version=0)
        assert not ok
        assert error is not None
        assert error.startswith("Version conflict")
        assert await put(store, ident, "k", "second", expected_version=1) == (True, None)
        ok, error = await put(store, ident, "k", "stale", expected_version=1)
        assert not ok
        assert error == "Version conflict on 'k': expected version 1, found 2"
        assert await store.state_get_versioned(ident.scope_key(), "k") == ("second", 2)

    async def test_delete_resets_the_version(
        self, store: StateStore, backend: StateBackend, ident: Identity
    ) -> None:
        self.require(backend, Capability.VERSIONS)
        await put(store, ident, "k", 1)
        await store.state_delete(ident.scope_key(), "k")
        assert await put(store, ident, "k", 2, expected_version=0) == (True, None)
        assert await store.state_get_versioned(ident.scope_key(), "k") == (2, 1)

    async def test_concurrent_increments_with_retry_lose_nothing(
        self, store: StateStore, backend: StateBackend, ident: Identity
    ) -> None:
        self.require(backend, Capability.VERSIONS)

        async def increment() -> int:
            for attempt in range(1, 1000):
                ok, _ = await try_increment(store, ident)
                if ok:
                    return attempt
                await asyncio.sleep(0)
            raise AssertionError("increment never succeeded")

        await asyncio.gather(*(increment() for _ in range(32)))
        assert await store.state_get_versioned(ident.scope_key(), "counter") == (32, 32)
