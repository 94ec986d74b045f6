"""Tenant isolation: no public call reaches outside its scope key.

A backend that builds storage keys by concatenation, matches scope keys with ``LIKE`` or
a glob, or folds case could let one scope read or change another. These tests surround
a target scope key with neighbours that such a backend would confuse with it (prefixes,
extensions, case changes, wildcard characters), run random calls on the target, and check
that every neighbour is untouched and that reads only ever return the target's data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statekit.backends.base import Capability, StateBackend
from statekit.store import StateStore
from statekit.testing.identities import Identity, new_identity
from statekit.testing.strategies import io_examples

# Neighbours of a scope key ``k`` that a leaky key scheme would mix up with ``k``.
NEIGHBOURS: dict[str, Callable[[str], str]] = {
    "same": lambda k: k,
    "extended": lambda k: k + "0",
    "truncated": lambda k: k[:-1],
    "upper-case": lambda k: k.upper(),
    "percent": lambda k: k + "%",
    "underscore-for-last": lambda k: k[:-1] + "_",
    "star": lambda k: k + "*",
    "question-for-last": lambda k: k[:-1] + "?",
    "bracket-class": lambda k: k[:-1] + "[" + k[-1] + "]",
    "colon": lambda k: k + ":",
    "space": lambda k: k + " ",
    "backslash": lambda k: k + "\\",
    "accent": lambda k: k + "é",
}
SEEDED_KEYS = ("a", "ab", "a_", "A", "external.conversation_id")
_key_alphabet = st.sampled_from(list("aAb_%*"))
_keys = st.sampled_from([*SEEDED_KEYS, "conversation_id"]) | st.text(
    _key_alphabet, min_size=1, max_size=3
)
_names = sorted(NEIGHBOURS)


@dataclass(frozen=True)
class _Op:
    name: str
    key: str = "a"
    prefix: str | None = None
    limit: int = 100
    after: str | None = None


_ops = st.one_of(
    st.builds(_Op, st.sampled_from(["get", "get_versioned", "set", "delete"]), _keys),
    st.builds(
        _Op,
        st.just("list"),
        prefix=st.none() | st.text(_key_alphabet, max_size=2),
        limit=st.integers(-1, 5),
        after=st.none() | _keys,
    ),
)


def _tag(scope_key: str, key: str, generation: int = 0) -> dict[str, Any]:
    return {"scope_key": scope_key, "key": key, "generation": generation}


async def _contents(store: StateStore, scope_keys: set[str]) -> dict[tuple[str, str], Any]:
    return {
        (e.scope_key, e.state_key): json.loads(e.value_json)
        async for e in store.export()
        if e.scope_key in scope_keys
    }


class IsolationContract:
    """Mixin of :class:`~statekit.testing.StateBackendContract`: scope keys never leak."""

    @given(
        target=st.sampled_from(_names),
        neighbours=st.sets(st.sampled_from(_names), min_size=2, max_size=5),
        ops=st.lists(_ops, min_size=1, max_size=15),
    )
    @io_examples
    async def test_calls_on_one_scope_key_never_reach_another(
        self,
        store: StateStore,
        backend: StateBackend,
        target: str,
        neighbours: set[str],
        ops: list[_Op],
    ) -> None:
        # A few neighbours per example keep the I/O small; hypothesis varies which.
        ident = new_identity()
        base = ident.scope_key()
        chosen = {target, "same", *neighbours}
        scope_keys = {name: NEIGHBOURS[name](base) for name in chosen}
        assert len(set(scope_keys.values())) == len(scope_keys)
        target_key = scope_keys[target]
        expected: dict[tuple[str, str], Any] = {}
        versioned = Capability.VERSIONS in backend.capabilities
        try:
            await _seed(store, ident, scope_keys.values(), expected)
            versions = {k: 1 for k in expected}
            for generation, op in enumerate(ops, start=1):
                await self._check_isolated_op(
                    store, ident, target_key, op, generation, expected, versions, versioned
                )
            assert await _contents(store, set(scope_keys.values())) == expected
            for scope_key in scope_keys.values():
                listed, has_more = await store.state_list(scope_key)
                assert listed == sorted(k for (s, k) in expected if s == scope_key)
                assert has_more is False
        finally:
            await _clean(store, scope_keys.values())

    async def test_writes_and_deletes_on_each_neighbour_leave_all_others_untouched(
        self, store: StateStore
    ) -> None:
        ident = new_identity()
        base = ident.scope_key()
        scope_keys = [make(base) for make in NEIGHBOURS.values()]
        expected: dict[tuple[str, str], Any] = {}
        try:
            await _seed(store, ident, scope_keys, expected)
            for generation, target in enumerate(scope_keys, start=1):
                value = _tag(target, "a", generation)
                assert await _put(store, ident, target, "a", value) == (True, None)
                assert await store.state_delete(target, "ab") is True
                expected[target, "a"] = value
                del expected[target, "ab"]
                assert await store.state_list(target, "a") == (["a", "a_"], False)
                assert await _contents(store, set(scope_keys)) == expected
        finally:
            await _clean(store, scope_keys)

    @staticmethod
    async def _check_isolated_op(
        store: StateStore,
        ident: Identity,
        target: str,
        op: _Op,
        generation: int,
        expected: dict[tuple[str, str], Any],
        versions: dict[tuple[str, str], int],
        versioned: bool,
    ) -> None:
        key = "external.conversation_id" if op.key == "conversation_id" else op.key
        if op.name == "get":
            assert await store.state_get(target, op.key) == expected.get((target, key))
        elif op.name == "get_versioned" and versioned:
            assert await store.state_get_versioned(target, op.key) == (
                expected.get((target, key)),
                versions.get((target, key), 0),
            )
        elif op.name == "set":
            value = _tag(target, key, generation)
            assert await _put(store, ident, target, op.key, value) == (True, None)
            expected[target, key] = value
            versions[target, key] = versions.get((target, key), 0) + 1
        elif op.name == "delete":
            existed = (target, key) in expected
            assert await store.state_delete(target, op.key) is existed
            expected.pop((target, key), None)
            versions.pop((target, key), None)
        elif op.name == "list":
            prefix = op.prefix or ""
            matching = sorted(
                k
                for (s, k) in expected
                if s == target and k.startswith(prefix) and (op.after is None or k > op.after)
            )
            page = max(0, op.limit)
            assert await store.state_list(target, op.prefix, op.limit, op.after) == (
                matching[:page],
                len(matching) > page,
            )

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ({"bot_id": "a:b", "workspace_id": "c"}, {"bot_id": "a", "workspace_id": "b:c"}),
            ({"thread_id": "t:x"}, {"thread_id": "t", "workspace_id": "x"}),
            ({"thread_id": None}, {"thread_id": ""}),
            ({"bot_id": None}, {"bot_id": "null"}),
            ({"bot_id": 'a","b'}, {"bot_id": "a", "workspace_id": "b"}),
            ({"workspace_id": "W"}, {"workspace_id": "w"}),
            ({"workspace_id": "é"}, {"workspace_id": "e\u0301"}),
            ({"workspace_id": "ws\\"}, {"workspace_id": "ws"}),
        ],
        ids=[
            "split-point",
            "thread-vs-workspace",
            "none-vs-empty",
            "none-vs-null",
            "quote-injection",
            "case",
            "unicode-normalisation",
            "trailing-backslash",
        ],
    )
    async def test_events_differing_in_tricky_ids_never_share_state(
        self, store: StateStore, first: dict[str, str | None], second: dict[str, str | None]
    ) -> None:
        one, two = new_identity(), new_identity()
        two.binding, two.descriptor = one.binding, one.descriptor
        one.event = one.event.model_copy(update=first)
        two.event = one.event.model_copy(update={"bot_id": "bot-1", "workspace_id": "ws-1"})
        two.event = two.event.model_copy(update={"thread_id": None, **second})
        # Same runner, binding and conversation id: only the tricky fields tell them apart.
        for ident, value in ((one, "first"), (two, "second")):
            ok = await store.apply_update_from_event(
                ident.event, ident.binding, ident.descriptor, "conversation", "k", value
            )
            assert ok == (True, None)
        snapshots = [
            await store.build_snapshot_from_event(i.event, i.binding, i.descriptor)
            for i in (one, two)
        ]
        assert snapshots[0]["conversation"]["k"] == "first"
        assert snapshots[1]["conversation"]["k"] == "second"
        assert await store.state_list(one.scope_key()) == (["k"], False)
        assert await store.state_delete(two.scope_key(), "k") is True
        assert await store.state_get(one.scope_key(), "k") == "first"


async def _seed(
    store: StateStore,
    ident: Identity,
    scope_keys: Iterable[str],
    expected: dict[tuple[str, str], Any],
) -> None:
    """Every scope key gets the same state keys, each value naming where it belongs."""
    for scope_key in scope_keys:
        for key in SEEDED_KEYS:
            assert await _put(store, ident, scope_key, key, _tag(scope_key, key)) == (True, None)
            expected[scope_key, key] = _tag(scope_key, key)


async def _clean(store: StateStore, scope_keys: Iterable[str]) -> None:
    for scope_key in scope_keys:
        for key in (await store.state_list(scope_key))[0]:
            await store.state_delete(scope_key, key)


async def _put(
    store: StateStore, ident: Identity, scope_key: str, key: str, value: Any
) -> tuple[bool, str | None]:
    return await store.state_set(
        scope_key, key, value, ident.runner_id, ident.binding_identity, "conversation"
    )
