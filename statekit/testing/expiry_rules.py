"""Expiry, continued: refresh on read, one scope's deadline against another's, the end of
an emptied scope, and sweeping. Part of :class:`~statekit.testing.ExpiryContract`, whose
fixtures (``expiring``, ``expiry_time``) these tests use."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from statekit.backends.base import NEVER, Capability, ExpiringBackend, SweepResult
from statekit.testing.clocks import ExpiryTime, retry_too_late
from statekit.testing.expiry_checks import Scope, assert_absent, assert_live
from statekit.testing.expiry_model import ExpiryModelContract
from statekit.testing.identities import new_identity

READS = ["get", "get_versioned", "read_scopes"]


def refreshing_read(
    backend: ExpiringBackend, read: str, scope: Scope, state_key: str, ttl: float
) -> Awaitable[Any]:
    """One read of ``state_key`` by ``read`` (a name from :data:`READS`) passing ``ttl``."""
    if read == "get":
        return backend.get(scope.key, state_key, ttl)
    if read == "get_versioned":
        if Capability.VERSIONS not in backend.capabilities:
            pytest.skip(f"backend does not declare {Capability.VERSIONS.value}")
        return backend.get_versioned(scope.key, state_key, ttl)
    return backend.read_scopes([scope.key], {scope.key: ttl})


class ExpiryRulesContract(ExpiryModelContract):
    """Refresh on read, isolation, emptied scopes and sweeps (see the module docstring)."""

    # ---- refresh on read ---------------------------------------------------------------

    @pytest.mark.parametrize("read", READS)
    async def test_a_read_with_ttl_moves_a_live_scopes_deadline(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime, read: str
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            scope = Scope.new()
            await scope.set(backend, "b", 2)
            _, old = await time.deadline_of(scope.set(backend, "a", 1, ttl=ttl), ttl)
            await time.wait(ttl * 0.8)
            _, new = await time.deadline_of(refreshing_read(backend, read, scope, "a", ttl), ttl)
            if time.exact:
                await time.at(old)
            else:
                await time.past(old)
            await assert_live(backend, time, scope, {"a": 1, "b": 2}, new)
            time.still_before(new)
            await time.past(new)
            await assert_absent(backend, scope, ["a", "b"])

        await retry_too_late(attempt)

    @pytest.mark.parametrize("read", READS)
    async def test_a_read_with_ttl_never_gives_a_scope_a_deadline(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime, read: str
    ) -> None:
        scope = Scope.new()
        await scope.set(expiring, "a", 1)
        await refreshing_read(expiring, read, scope, "a", expiry_time.ttl)
        await assert_live(expiring, expiry_time, scope, {"a": 1}, None)
        await expiry_time.wait(expiry_time.ttl * 2)
        await assert_live(expiring, expiry_time, scope, {"a": 1}, None)

    @pytest.mark.parametrize("read", READS)
    async def test_a_read_with_ttl_never_creates_or_revives_a_scope(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime, read: str
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl
        never_written, expired = Scope.new(), Scope.new()
        _, deadline = await time.deadline_of(expired.set(backend, "a", 1, ttl=ttl), ttl)
        await time.past(deadline)
        for scope in (never_written, expired):
            await refreshing_read(backend, read, scope, "a", ttl)
            await assert_absent(backend, scope, ["a"])
            await scope.set(backend, "b", 2)
            await assert_live(backend, time, scope, {"b": 2}, None)

    @pytest.mark.parametrize("read", READS)
    async def test_a_read_with_never_removes_the_deadline(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime, read: str
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl
        scope = Scope.new()
        _, deadline = await time.deadline_of(scope.set(backend, "a", 1, ttl=ttl), ttl)
        await refreshing_read(backend, read, scope, "a", NEVER)
        await time.past(deadline)
        await assert_live(backend, time, scope, {"a": 1}, None)

    async def test_read_scopes_refreshes_only_the_scopes_given_a_ttl(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            refreshed, kept = Scope.new(), Scope.new()
            await refreshed.set(backend, "a", 1, ttl=ttl)
            _, old = await time.deadline_of(kept.set(backend, "a", 1, ttl=ttl), ttl)
            await time.wait(ttl * 0.8)
            read = backend.read_scopes([refreshed.key, kept.key], {refreshed.key: ttl})
            stored, new = await time.deadline_of(read, ttl)
            assert stored == {refreshed.key: {"a": "1"}, kept.key: {"a": "1"}}
            await time.past(old)
            await assert_absent(backend, kept, ["a"])
            await assert_live(backend, time, refreshed, {"a": 1}, new)
            time.still_before(new)

        await retry_too_late(attempt)

    # ---- isolation and emptied scopes ----------------------------------------------------

    async def test_one_scopes_deadline_never_touches_another(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        """The four scopes of one identity and a neighbour's: each keeps its own deadline."""
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            ident = new_identity()
            conversation, actor, subject, runner = (
                Scope.of(ident, s) for s in ("conversation", "actor", "subject", "runner")
            )
            neighbour = Scope.new()
            await subject.set(backend, "k", 3)
            await runner.set(backend, "k", 4, ttl=ttl)
            await runner.set(backend, "k", 4, ttl=NEVER)
            _, late = await time.deadline_of(actor.set(backend, "k", 2, ttl=ttl * 8), ttl * 8)
            _, soon = await time.deadline_of(conversation.set(backend, "k", 1, ttl=ttl), ttl)
            _, other = await time.deadline_of(neighbour.set(backend, "k", 5, ttl=ttl * 8), ttl * 8)
            await time.past(soon)
            await assert_absent(backend, conversation, ["k"])
            await assert_live(backend, time, actor, {"k": 2}, late)
            await assert_live(backend, time, subject, {"k": 3}, None)
            await assert_live(backend, time, runner, {"k": 4}, None)
            await assert_live(backend, time, neighbour, {"k": 5}, other)
            time.still_before(late)

        await retry_too_late(attempt)

    async def test_deleting_the_last_entry_ends_the_scope_and_its_deadline(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        """An emptied scope is absent, so it has no deadline, and a later write without
        ttl starts a scope that never expires (as after expiry)."""
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl
        scope = Scope.new()
        _, deadline = await time.deadline_of(scope.set(backend, "a", 1, ttl=ttl), ttl)
        assert await backend.delete(scope.key, "a") is True
        assert await backend.scope_deadline(scope.key) is None
        await scope.set(backend, "b", 2)
        await time.past(deadline)
        await assert_live(backend, time, scope, {"b": 2}, None)

    # ---- sweeping ----------------------------------------------------------------------

    async def test_sweep_reclaims_expired_scopes_and_keeps_live_ones(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        """Counts are exact on a backend that was empty; a backend that reclaims by itself
        (no ``clock``) may report zeros. Either way no live entry is removed."""
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl
        was_empty = [e async for e in backend.iter_entries()] == []
        expired, expired_too = Scope.new(), Scope.new()
        live, forever, rewritten = Scope.new(), Scope.new(), Scope.new()
        await backend.set_many([expired_too.write(k, 2, ttl) for k in ("a", "b")])
        await rewritten.set(backend, "old", 1, ttl=ttl)
        writes = backend.set_many([expired.write(k, 1, ttl) for k in ("a", "b", "c")])
        _, soon = await time.deadline_of(writes, ttl)
        _, late = await time.deadline_of(live.set(backend, "a", 3, ttl=ttl * 40), ttl * 40)
        await forever.set(backend, "a", 4)
        await rewritten.set(backend, "a", 5, ttl=NEVER)
        await time.past(soon)
        result = await backend.sweep_expired(batch_size=2)
        assert isinstance(result, SweepResult)
        if time.exact:
            assert result.scopes >= 2
            assert result.entries >= 5
            if was_empty:
                assert result == SweepResult(scopes=2, entries=5)
        await assert_live(backend, time, live, {"a": 3}, late)
        await assert_live(backend, time, forever, {"a": 4}, None)
        await assert_live(backend, time, rewritten, {"old": 1, "a": 5}, None)
        await assert_absent(backend, expired, ["a", "b", "c"])
        await assert_absent(backend, expired_too, ["a", "b"])
        if was_empty:
            assert await backend.sweep_expired() == SweepResult()

    async def test_a_sweep_with_nothing_expired_removes_nothing(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        scope = Scope.new()
        _, deadline = await expiry_time.deadline_of(
            scope.set(expiring, "a", 1, ttl=expiry_time.ttl * 40), expiry_time.ttl * 40
        )
        await Scope.new().set(expiring, "a", 2)
        result = await expiring.sweep_expired()
        assert isinstance(result, SweepResult)
        await assert_live(expiring, expiry_time, scope, {"a": 1}, deadline)
