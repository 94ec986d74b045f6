"""What the expiry contract checks on every read path: a scope live with exactly its
entries and deadline, or absent everywhere. Backend-level calls, no store in between."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from statekit.backends.base import (
    Capability,
    ExpiringBackend,
    ScopeContext,
    StateBackend,
    StateWrite,
)
from statekit.testing.clocks import Deadline, ExpiryTime
from statekit.testing.identities import Identity, new_identity


@dataclass(frozen=True, slots=True)
class Scope:
    """One fresh scope (a random identity's), with the context its writes carry."""

    key: str
    context: ScopeContext

    @classmethod
    def new(cls, scope: str = "conversation") -> Scope:
        return cls.of(new_identity(), scope)

    @classmethod
    def of(cls, ident: Identity, scope: str) -> Scope:
        """``ident``'s scope named ``scope``."""
        context = ScopeContext(ident.runner_id, ident.binding_identity, scope)
        return cls(ident.scope_key(scope), context)

    async def set(
        self,
        backend: ExpiringBackend,
        state_key: str,
        value: int,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Write ``value`` (as JSON text) under ``state_key``; returns the new version."""
        return await backend.set(
            StateWrite(self.key, state_key, str(value), self.context, ttl=ttl), expected_version
        )

    def write(self, state_key: str, value: int, ttl: float | None = None) -> StateWrite:
        """The same write, for ``set_many``."""
        return StateWrite(self.key, state_key, str(value), self.context, ttl)


def as_expiring(backend: StateBackend) -> ExpiringBackend:
    """``backend`` as an :class:`ExpiringBackend` (the caller checked the capability)."""
    return cast(ExpiringBackend, backend)


async def assert_live(
    backend: ExpiringBackend,
    time: ExpiryTime,
    scope: Scope,
    entries: Mapping[str, int],
    deadline: Deadline | None,
) -> None:
    """``scope`` holds exactly ``entries`` on every read path, and its deadline is
    ``deadline`` (``None``: it has none) in ``scope_deadline`` and ``iter_entries``.

    In real time, a check that fails once the deadline has been reached raises
    :class:`~statekit.testing.clocks.TooLate` instead: the scope may rightly have expired
    while the checks ran (a loaded machine), which says nothing about the backend. A check
    failing while the deadline is still ahead fails the test."""
    try:
        await _assert_live(backend, time, scope, entries, deadline)
    except AssertionError:
        if deadline is not None and not time.exact:
            time.still_before(deadline)
        raise


async def _assert_live(
    backend: ExpiringBackend,
    time: ExpiryTime,
    scope: Scope,
    entries: Mapping[str, int],
    deadline: Deadline | None,
) -> None:
    expected = {key: str(value) for key, value in entries.items()}
    keys = sorted(expected)
    for state_key, value_json in expected.items():
        assert await backend.get(scope.key, state_key) == value_json, state_key
        if Capability.VERSIONS in backend.capabilities:
            got, version = await backend.get_versioned(scope.key, state_key)
            assert (got, version > 0) == (value_json, True), state_key
    assert await backend.read_scopes([scope.key]) == {scope.key: expected}
    assert await backend.list_keys(scope.key, "", 100, None) == (keys, False)
    if keys:
        assert await backend.list_keys(scope.key, "", len(keys) - 1, None) == (keys[:-1], True)
    exported = [e async for e in backend.iter_entries() if e.scope_key == scope.key]
    assert {e.state_key: e.value_json for e in exported} == expected
    reported = await backend.scope_deadline(scope.key)
    if deadline is None:
        assert reported is None, f"a scope without a deadline reports {reported}"
        assert all(e.expires_at is None for e in exported)
    else:
        assert time.matches(reported, deadline), f"deadline {reported}, expected {deadline}"
        assert reported is not None
        assert reported.utcoffset() is not None
        assert not reported.utcoffset(), "deadlines are UTC"
        assert all(time.matches(e.expires_at, deadline) for e in exported)


async def assert_absent(backend: ExpiringBackend, scope: Scope, keys: list[str]) -> None:
    """``scope`` is absent on every read path, and deleting any of ``keys`` finds nothing."""
    for state_key in keys:
        assert await backend.get(scope.key, state_key) is None, state_key
        if Capability.VERSIONS in backend.capabilities:
            assert await backend.get_versioned(scope.key, state_key) == (None, 0), state_key
    assert await backend.read_scopes([scope.key]) == {scope.key: {}}
    assert await backend.list_keys(scope.key, "", 100, None) == ([], False)
    assert await backend.list_keys(scope.key, "", 0, None) == ([], False)
    assert [e async for e in backend.iter_entries() if e.scope_key == scope.key] == []
    assert await backend.scope_deadline(scope.key) is None
    for state_key in keys:
        assert await backend.delete(scope.key, state_key) is False, state_key
