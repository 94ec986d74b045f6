"""Expiry against a model: random writes, reads, deletes, sweeps and clock moves on a few
scopes, each call's answer and every scope's entries and deadline compared with what a
plain dict and a deadline per scope say. Runs on a backend with a ``clock`` only (the
clock moves in jumps, to 1 ms around deadlines as often as anywhere else)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statekit.backends.base import NEVER, Capability, ExpiringBackend, StateWrite
from statekit.errors import VersionConflictError
from statekit.testing.clocks import ExpiryTime, FakeTime
from statekit.testing.expiry_checks import Scope
from statekit.testing.strategies import io_examples

SCOPES = 3
_ttls = st.sampled_from([None, NEVER, 1.0, 5.0, 30.0])
_scope = st.integers(0, SCOPES - 1)
_key = st.sampled_from(["a", "b", "c"])

operations = st.one_of(
    st.tuples(st.just("set"), _scope, _key, _ttls, st.none() | st.integers(0, 3)),
    st.tuples(st.just("set_many"), st.lists(st.tuples(_scope, _key, _ttls), max_size=4)),
    st.tuples(st.just("get"), _scope, _key, _ttls),
    st.tuples(st.just("read_scopes"), st.dictionaries(_scope, st.sampled_from([1.0, 30.0]))),
    st.tuples(st.just("delete"), _scope, _key),
    st.tuples(st.just("advance"), st.sampled_from([0.001, 0.999, 1.0, 4.0, 29.0, 600.0])),
    st.tuples(st.just("to_deadline"), _scope, st.sampled_from([-0.001, 0.0, 0.001])),
    st.tuples(st.just("sweep"), st.integers(1, 3)),
)


@dataclass
class _ModelScope:
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)
    deadline: float | None = None


class ExpiryModel:
    """What the backend must hold: entries and a deadline per scope, ``now`` given."""

    def __init__(self, versioned: bool) -> None:
        self.versioned = versioned
        self.scopes = [_ModelScope() for _ in range(SCOPES)]

    def live(self, index: int, now: float) -> _ModelScope:
        scope = self.scopes[index]
        if scope.deadline is not None and now >= scope.deadline:
            scope.entries.clear()
            scope.deadline = None
        return scope

    @staticmethod
    def move(scope: _ModelScope, now: float, ttl: float | None) -> None:
        if ttl is not None:
            scope.deadline = None if math.isinf(ttl) else now + ttl

    def set(
        self, index: int, key: str, value: str, now: float, ttl: float | None, expected: int | None
    ) -> int | None:
        """The new version, or ``None`` for a version conflict (nothing changes)."""
        scope = self.live(index, now)
        version = scope.entries.get(key, ("", 0))[1]
        if expected is not None and expected != version:
            return None
        scope.entries[key] = (value, version + 1)
        self.move(scope, now, ttl)
        return version + 1

    def refresh(self, index: int, now: float, ttl: float | None) -> _ModelScope:
        scope = self.live(index, now)
        if scope.entries and scope.deadline is not None:
            self.move(scope, now, ttl)
        return scope

    def delete(self, index: int, key: str, now: float) -> bool:
        scope = self.live(index, now)
        found = scope.entries.pop(key, None) is not None
        if not scope.entries:
            scope.deadline = None  # an emptied scope is absent: its deadline goes with it
        return found


class ExpiryModelContract:
    """The property test of :class:`~statekit.testing.ExpiryContract`."""

    @given(ops=st.lists(operations, min_size=1, max_size=25))
    @io_examples
    async def test_random_calls_and_clock_moves_match_a_model(
        self, expiring: ExpiringBackend, expiry_time: ExpiryTime, ops: list[tuple[Any, ...]]
    ) -> None:
        if not isinstance(expiry_time, FakeTime):
            pytest.skip("the model needs a backend whose clock can be moved (`clock`)")
        versioned = Capability.VERSIONS in expiring.capabilities
        run = _Run(expiring, expiry_time, ExpiryModel(versioned), [Scope.new() for _ in "abc"])
        for number, op in enumerate(ops):
            await run.step(number, op)
            await run.check(f"after {op!r}")


@dataclass
class _Run:
    backend: ExpiringBackend
    time: FakeTime
    model: ExpiryModel
    scopes: list[Scope]

    async def step(self, number: int, op: tuple[Any, ...]) -> None:
        backend, model, now, value = self.backend, self.model, self.time.now(), str(number)
        name, *args = op
        if name == "set":
            index, key, ttl, expected = args
            expected = expected if model.versioned else None
            want = model.set(index, key, value, now, ttl, expected)
            try:
                got: int | None = await backend.set(
                    StateWrite(
                        self.scopes[index].key, key, value, self.scopes[index].context, ttl=ttl
                    ),
                    expected,
                )
            except VersionConflictError:
                got = None
            if model.versioned:
                assert got == want
        elif name == "set_many":
            for index, key, ttl in args[0]:
                model.set(index, key, value, now, ttl, None)
            await backend.set_many([self.scopes[i].write(k, number, t) for i, k, t in args[0]])
        elif name == "get":
            index, key, ttl = args
            entry = model.refresh(index, now, ttl).entries.get(key)
            assert await backend.get(self.scopes[index].key, key, ttl) == (entry and entry[0])
        elif name == "read_scopes":
            ttls = {self.scopes[i].key: t for i, t in args[0].items()}
            want_all = {
                s.key: self._values(model.refresh(i, now, args[0].get(i)))
                for i, s in enumerate(self.scopes)
            }
            assert await backend.read_scopes([s.key for s in self.scopes], ttls) == want_all
        elif name == "delete":
            index, key = args
            assert await backend.delete(self.scopes[index].key, key) == model.delete(
                index, key, now
            )
        else:
            await self._move_or_sweep(name, args)

    async def _move_or_sweep(self, name: str, args: list[Any]) -> None:
        if name == "advance":
            self.time.clock.advance(args[0])
        elif name == "to_deadline":
            index, offset = args
            deadline = self.model.live(index, self.time.now()).deadline
            if deadline is not None:
                self.time.clock.set(deadline + offset)
        else:
            await self.backend.sweep_expired(batch_size=args[0])

    @staticmethod
    def _values(scope: _ModelScope) -> dict[str, str]:
        return {key: value for key, (value, _) in scope.entries.items()}

    async def check(self, when: str) -> None:
        """Every scope's entries, versions and deadline, by reads that change nothing."""
        now = self.time.now()
        for index, scope in enumerate(self.scopes):
            want = self.model.live(index, now)
            stored = await self.backend.read_scopes([scope.key])
            assert stored == {scope.key: self._values(want)}, when
            keys = sorted(want.entries)
            assert await self.backend.list_keys(scope.key, "", 100, None) == (keys, False), when
            if self.model.versioned:
                for key, (value, version) in want.entries.items():
                    got = await self.backend.get_versioned(scope.key, key)
                    assert got == (value, version), when
            deadline = await self.backend.scope_deadline(scope.key)
            expected = None if want.deadline is None else _ms(want.deadline)
            reported = None if deadline is None else _ms(deadline.timestamp())
            assert reported == expected, f"{when}: deadline {deadline}"


def _ms(seconds: float) -> int:
    """POSIX seconds in whole milliseconds, the fake clock's resolution."""
    return round(seconds * 1000)
