"""Expiry (:attr:`~statekit.Capability.EXPIRY`): per-scope deadlines, sliding on write.

Each test runs only on a backend that declares the capability. One with a ``clock``
attribute gets a :class:`~statekit.testing.clocks.FakeClock` for the test (restored
afterwards): every read path is checked 1 ms before a deadline, at it and after it, and
nothing sleeps. One without (Redis keeps its own clock) runs in real time with lifetimes
of a quarter second: live while the deadline is surely ahead, absent once it is surely
past; an attempt the machine made too slow to tell is repeated with fresh scopes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator

import pytest

from statekit.backends.base import NEVER, Capability, ExpiringBackend, StateBackend
from statekit.errors import VersionConflictError
from statekit.testing.clocks import ExpiryTime, expiry_time_of, retry_too_late
from statekit.testing.expiry_checks import Scope, as_expiring, assert_absent, assert_live
from statekit.testing.expiry_rules import ExpiryRulesContract


@pytest.mark.asyncio
class ExpiryContract(ExpiryRulesContract):
    """Mixin for a backend's contract test class (next to
    :class:`~statekit.testing.StateBackendContract`, whose ``backend`` fixture it uses):
    expiry, where declared."""

    @pytest.fixture
    def expiring(self, backend: StateBackend) -> ExpiringBackend:
        if Capability.EXPIRY not in backend.capabilities:
            pytest.skip(f"backend does not declare {Capability.EXPIRY.value}")
        return as_expiring(backend)

    @pytest.fixture
    def expiry_time(self, expiring: ExpiringBackend) -> Iterator[ExpiryTime]:
        with expiry_time_of(expiring) as time:
            yield time

    # ---- every read path at the deadline -----------------------------------------------

    @pytest.mark.parametrize("call", ["set", "set_many"])
    async def test_every_read_path_treats_an_expired_scope_as_absent(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime, call: str
    ) -> None:
        """Live 1 ms before the deadline, absent at it and after it: get, get_versioned,
        read_scopes, list_keys and has_more, iter_entries, scope_deadline and delete."""
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            scope = Scope.new()
            entries = {"a": 1, "b": 2, "c": 3}
            write: Awaitable[object]
            if call == "set":
                write = scope.set(backend, "a", 1, ttl=ttl)
            else:
                write = backend.set_many([scope.write(k, v, ttl) for k, v in entries.items()])
            _, deadline = await time.deadline_of(write, ttl)
            for key, value in entries.items():
                await scope.set(backend, key, value)  # ttl=None leaves the deadline
            await scope.set(backend, "d", 4)
            await time.before(deadline)
            assert await backend.delete(scope.key, "d") is True
            await assert_live(backend, time, scope, entries, deadline)
            time.still_before(deadline)
            if time.exact:
                await time.at(deadline)
                await assert_absent(backend, scope, [*entries, "d"])
            await time.past(deadline)
            await assert_absent(backend, scope, [*entries, "d"])

        await retry_too_late(attempt)

    async def test_a_scope_written_without_ttl_never_expires(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        scope = Scope.new()
        await scope.set(expiring, "a", 1)
        await scope.set(expiring, "b", 2, ttl=None)
        await expiry_time.wait(10 * 365 * 86400 if expiry_time.exact else expiry_time.ttl)
        await assert_live(expiring, expiry_time, scope, {"a": 1, "b": 2}, None)

    # ---- writes move the deadline ------------------------------------------------------

    async def test_every_accepted_write_moves_the_whole_scopes_deadline(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            scope = Scope.new()
            _, first = await time.deadline_of(scope.set(backend, "a", 1, ttl=ttl), ttl)
            await time.wait(ttl * 0.8)
            _, second = await time.deadline_of(scope.set(backend, "b", 2, ttl=ttl), ttl)
            if time.exact:
                await time.at(first)
            else:
                await time.past(first)
            await assert_live(backend, time, scope, {"a": 1, "b": 2}, second)
            time.still_before(second)
            await time.past(second)
            await assert_absent(backend, scope, ["a", "b"])

        await retry_too_late(attempt)

    async def test_set_many_moves_the_deadline_of_each_scope_it_writes(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            one, two, untouched = Scope.new(), Scope.new(), Scope.new()
            _, first = await time.deadline_of(one.set(backend, "a", 1, ttl=ttl), ttl)
            await untouched.set(backend, "a", 1, ttl=ttl)
            _, old = await time.deadline_of(two.set(backend, "a", 1, ttl=ttl), ttl)
            await time.wait(ttl * 0.8)
            writes = [one.write("b", 2, ttl), two.write("b", 2, ttl)]
            _, new = await time.deadline_of(backend.set_many(writes), ttl)
            time.still_before(first)  # the batch reached every scope before it expired
            await time.past(old)
            await assert_absent(backend, untouched, ["a"])
            for scope in (one, two):
                await assert_live(backend, time, scope, {"a": 1, "b": 2}, new)
            time.still_before(new)

        await retry_too_late(attempt)

    async def test_a_write_with_a_shorter_ttl_brings_the_deadline_forward(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            scope = Scope.new()
            await scope.set(backend, "a", 1, ttl=20 * ttl)
            _, deadline = await time.deadline_of(scope.set(backend, "a", 2, ttl=ttl), ttl)
            await time.before(deadline)
            await assert_live(backend, time, scope, {"a": 2}, deadline)
            time.still_before(deadline)
            await time.past(deadline)
            await assert_absent(backend, scope, ["a"])

        await retry_too_late(attempt)

    async def test_a_write_without_ttl_leaves_the_deadline_where_it_is(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            scope = Scope.new()
            _, deadline = await time.deadline_of(scope.set(backend, "a", 1, ttl=ttl), ttl)
            await time.wait(ttl / 2)
            await scope.set(backend, "b", 2)
            await backend.set_many([scope.write("c", 3)])
            await time.before(deadline)
            await assert_live(backend, time, scope, {"a": 1, "b": 2, "c": 3}, deadline)
            time.still_before(deadline)
            await time.past(deadline)
            await assert_absent(backend, scope, ["a", "b", "c"])

        await retry_too_late(attempt)

    @pytest.mark.parametrize("call", ["set", "set_many"])
    async def test_a_write_with_never_removes_the_deadline(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime, call: str
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl
        scope = Scope.new()
        _, deadline = await time.deadline_of(scope.set(backend, "a", 1, ttl=ttl), ttl)
        if call == "set":
            await scope.set(backend, "b", 2, ttl=NEVER)
        else:
            await backend.set_many([scope.write("b", 2, NEVER)])
        await time.past(deadline)
        await assert_live(backend, time, scope, {"a": 1, "b": 2}, None)
        await scope.set(backend, "c", 3, ttl=NEVER)  # on a scope without a deadline
        await assert_live(backend, time, scope, {"a": 1, "b": 2, "c": 3}, None)

    async def test_the_last_write_of_a_batch_to_a_scope_sets_its_deadline(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        """Writes of one scope in a batch apply in call order, whatever their keys: the
        last one's ttl is the scope's (keys given out of order on purpose)."""
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            timed, unending = Scope.new(), Scope.new()
            writes = [timed.write("b", 2, NEVER), timed.write("a", 1, ttl)]
            _, deadline = await time.deadline_of(backend.set_many(writes), ttl)
            await backend.set_many([unending.write("b", 2, ttl), unending.write("a", 1, NEVER)])
            await time.past(deadline)
            await assert_absent(backend, timed, ["a", "b"])
            await assert_live(backend, time, unending, {"a": 1, "b": 2}, None)

        await retry_too_late(attempt)

    async def test_a_rejected_write_moves_nothing(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        if Capability.VERSIONS not in expiring.capabilities:
            pytest.skip(f"backend does not declare {Capability.VERSIONS.value}")
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl

        async def attempt() -> None:
            scope, forever = Scope.new(), Scope.new()
            await forever.set(backend, "a", 1)
            _, deadline = await time.deadline_of(scope.set(backend, "a", 1, ttl=ttl), ttl)
            await time.wait(ttl / 2)
            for move in (ttl, NEVER):
                with pytest.raises(VersionConflictError):
                    await scope.set(backend, "a", 2, ttl=move, expected_version=7)
                with pytest.raises(VersionConflictError):
                    await scope.set(backend, "new", 2, ttl=move, expected_version=1)
            with pytest.raises(VersionConflictError):
                await forever.set(backend, "a", 2, ttl=ttl, expected_version=0)
            await time.before(deadline)
            await assert_live(backend, time, scope, {"a": 1}, deadline)
            time.still_before(deadline)
            await time.past(deadline)
            await assert_absent(backend, scope, ["a", "new"])
            await assert_live(backend, time, forever, {"a": 1}, None)

        await retry_too_late(attempt)

    async def test_a_write_after_expiry_starts_a_new_scope(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        """No old entry comes back, versions restart at 1, ``expected_version=0``
        succeeds, and the new scope has only the deadline its own writes give it."""
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl
        versioned = Capability.VERSIONS in backend.capabilities
        scope = Scope.new()
        await scope.set(backend, "a", 1, ttl=ttl)
        await scope.set(backend, "a", 2)
        _, deadline = await time.deadline_of(scope.set(backend, "b", 3), ttl)
        await time.past(deadline)
        if versioned:
            assert await scope.set(backend, "a", 10, expected_version=0) == 1
            assert await backend.get_versioned(scope.key, "a") == ("10", 1)
        else:
            await scope.set(backend, "a", 10)
        await assert_live(backend, time, scope, {"a": 10}, None)

    async def test_a_batch_after_expiry_starts_a_new_scope(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime
    ) -> None:
        backend, time, ttl = expiring, expiry_time, expiry_time.ttl
        scope = Scope.new()
        _, deadline = await time.deadline_of(scope.set(backend, "a", 1, ttl=ttl), ttl)
        await scope.set(backend, "b", 2)
        await time.past(deadline)
        await backend.set_many([scope.write("b", 20), scope.write("c", 30)])
        await assert_live(backend, time, scope, {"b": 20, "c": 30}, None)
        if Capability.VERSIONS in backend.capabilities:
            assert await backend.get_versioned(scope.key, "b") == ("20", 1)
