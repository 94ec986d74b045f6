"""The behaviour every backend shares, written against :class:`statekit.StateStore`.

Each test states one rule of the contract (see DESIGN.md, "Semantics every backend must
share"). Tests use fresh random identities, so a backend fixture on a shared server only
has to clean up what it wrote; ``clear_all`` is only exercised on the fixture's own
backend, which must own a private prefix, table or database.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from datetime import timezone
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from statekit.backends.base import Capability, StateBackend, StateEntry
from statekit.scope import VALID_STATE_SCOPES, build_state_scope_key
from statekit.store import StateStore, StateUpdate
from statekit.testing.fuzz import FuzzContract
from statekit.testing.identities import Identity, new_identity
from statekit.testing.isolation import IsolationContract
from statekit.testing.strategies import io_examples, json_values, listing_keys, prefix_alphabet
from statekit.validation import MAX_STATE_KEY_LENGTH, MAX_VALUE_JSON_BYTES

_examples = io_examples


async def _entries(store: StateStore, scope_key: str) -> dict[str, StateEntry]:
    return {e.state_key: e async for e in store.export() if e.scope_key == scope_key}


async def _set(
    store: StateStore, ident: Identity, key: str, value: Any, scope: str = "conversation"
) -> tuple[bool, str | None]:
    return await store.state_set(
        ident.scope_key(scope), key, value, ident.runner_id, ident.binding_identity, scope
    )


class StateBackendContract(IsolationContract, FuzzContract):
    """Subclass with a ``backend`` fixture yielding a fresh backend; see :mod:`statekit.testing`."""

    @pytest.fixture
    def backend(self) -> StateBackend:  # pragma: no cover - replaced by subclasses
        raise NotImplementedError("provide a `backend` fixture")

    @pytest_asyncio.fixture
    async def store(self, backend: StateBackend) -> AsyncIterator[StateStore]:
        yield StateStore(backend)

    @pytest.fixture
    def ident(self) -> Identity:
        return new_identity()

    def require(self, backend: StateBackend, capability: Capability) -> None:
        if capability not in backend.capabilities:
            pytest.skip(f"backend does not declare {capability.value}")

    # ---- values ---------------------------------------------------------------------

    @pytest.mark.parametrize(
        "value",
        [
            None,
            True,
            False,
            0,
            -1,
            2**63,
            -(2**63),
            1.5,
            -0.25,
            1e300,
            "",
            "text",
            [],
            {},
            [1, "two", None, [3]],
            {"a": {"b": [1, 2, {"c": None}]}, "n": 1.0},
        ],
    )
    async def test_every_json_type_round_trips(
        self, store: StateStore, ident: Identity, value: Any
    ) -> None:
        assert await _set(store, ident, "k", value) == (True, None)
        assert await store.state_get(ident.scope_key(), "k") == value
        stored = await store.state_get(ident.scope_key(), "k")
        assert type(stored) is type(value)

    async def test_unicode_keys_and_values_round_trip(
        self, store: StateStore, ident: Identity
    ) -> None:
        values = {"ключ": "значение", "键": "中文", "🔑": "😀 emoji", "é": {"ü": ["ß"]}}
        for key, value in values.items():
            assert await _set(store, ident, key, value) == (True, None)
        for key, value in values.items():
            assert await store.state_get(ident.scope_key(), key) == value

    async def test_value_of_exactly_the_limit_is_accepted(
        self, store: StateStore, ident: Identity
    ) -> None:
        value = "x" * (MAX_VALUE_JSON_BYTES - 2)  # two quote characters
        assert await _set(store, ident, "big", value) == (True, None)
        assert await store.state_get(ident.scope_key(), "big") == value

    @given(value=json_values)
    @_examples
    async def test_any_json_value_round_trips(self, store: StateStore, value: Any) -> None:
        ident = new_identity()
        assert await _set(store, ident, "v", value) == (True, None)
        assert await store.state_get(ident.scope_key(), "v") == json.loads(json.dumps(value))

    # ---- keys -----------------------------------------------------------------------

    async def test_key_of_maximum_length_is_accepted(
        self, store: StateStore, ident: Identity
    ) -> None:
        key = "k" * MAX_STATE_KEY_LENGTH
        assert await _set(store, ident, key, 1) == (True, None)
        assert await store.state_get(ident.scope_key(), key) == 1

    @given(key=st.text(max_size=300))
    @_examples
    async def test_key_is_accepted_iff_it_follows_the_rules(
        self, store: StateStore, key: str
    ) -> None:
        ident = new_identity()
        valid = 0 < len(key) <= MAX_STATE_KEY_LENGTH and not any(
            ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in key
        )
        ok, _ = await _set(store, ident, key, "v")
        assert ok is valid
        stored_key = "external.conversation_id" if key == "conversation_id" else key
        assert (await store.state_get(ident.scope_key(), key) == "v") is valid
        assert (await store.state_list(ident.scope_key()))[0] == ([stored_key] if valid else [])

    async def test_alias_applies_to_get_set_delete_and_prefix(
        self, store: StateStore, ident: Identity
    ) -> None:
        scope_key = ident.scope_key()
        assert await _set(store, ident, "conversation_id", "c-1") == (True, None)
        assert await store.state_get(scope_key, "external.conversation_id") == "c-1"
        assert await store.state_get(scope_key, "conversation_id") == "c-1"
        assert await store.state_list(scope_key) == (["external.conversation_id"], False)
        assert await store.state_list(scope_key, prefix="conversation_id") == (
            ["external.conversation_id"],
            False,
        )
        assert await store.state_delete(scope_key, "conversation_id") is True
        assert await store.state_get(scope_key, "external.conversation_id") is None

    # ---- event API: policy, identity, isolation -------------------------------------------

    async def test_update_from_event_is_read_by_snapshot(
        self, store: StateStore, ident: Identity
    ) -> None:
        for scope in VALID_STATE_SCOPES:
            ok = await store.apply_update_from_event(
                ident.event, ident.binding, ident.descriptor, scope, f"{scope}.k", {"s": scope}
            )
            assert ok == (True, None)
        snapshot = await store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        )
        assert set(snapshot) == set(VALID_STATE_SCOPES)
        for scope in VALID_STATE_SCOPES:
            assert snapshot[scope][f"{scope}.k"] == {"s": scope}
        assert snapshot["actor"] == {"actor.k": {"s": "actor"}}

    async def test_snapshot_seeds_conversation_id_from_event(
        self, store: StateStore, ident: Identity
    ) -> None:
        snapshot = await store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        )
        assert snapshot["conversation"] == {"external.conversation_id": ident.event.conversation_id}
        assert await store.state_get(ident.scope_key(), "external.conversation_id") is None

    async def test_snapshot_prefers_stored_conversation_id(
        self, store: StateStore, ident: Identity
    ) -> None:
        await store.apply_update_from_event(
            ident.event,
            ident.binding,
            ident.descriptor,
            "conversation",
            "conversation_id",
            "stored",
        )
        snapshot = await store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        )
        assert snapshot["conversation"]["external.conversation_id"] == "stored"

    async def test_snapshot_keeps_stored_null_values(
        self, store: StateStore, ident: Identity
    ) -> None:
        await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "actor", "nothing", None
        )
        snapshot = await store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        )
        assert snapshot["actor"] == {"nothing": None}

    @pytest.mark.parametrize(
        "field", ["runner", "binding", "workspace_id", "bot_id", "conversation_id", "thread_id"]
    )
    async def test_scopes_are_isolated_by_identity(self, store: StateStore, field: str) -> None:
        first = new_identity()
        # Same conversation, other runner and binding; then made to differ in `field` only.
        second = new_identity(conversation_id=first.event.conversation_id)
        if field == "runner":
            second.binding = first.binding
        elif field == "binding":
            second.descriptor = first.descriptor
        else:
            second.binding, second.descriptor = first.binding, first.descriptor
            second.event = first.event.model_copy(update={field: "other"})
        assert second.scope_key() != first.scope_key()
        await store.apply_update_from_event(
            first.event, first.binding, first.descriptor, "conversation", "k", "first"
        )
        await store.apply_update_from_event(
            second.event, second.binding, second.descriptor, "conversation", "k", "second"
        )
        assert await store.state_get(first.scope_key(), "k") == "first"
        assert await store.state_get(second.scope_key(), "k") == "second"
        assert await store.state_delete(second.scope_key(), "k") is True
        assert await store.state_get(first.scope_key(), "k") == "first"

    async def test_scopes_of_one_event_are_isolated(
        self, store: StateStore, ident: Identity
    ) -> None:
        for scope in VALID_STATE_SCOPES:
            await store.apply_update_from_event(
                ident.event, ident.binding, ident.descriptor, scope, "k", scope
            )
        for scope in VALID_STATE_SCOPES:
            assert await store.state_get(ident.scope_key(scope), "k") == scope
            assert await store.state_list(ident.scope_key(scope)) == (["k"], False)

    # ---- listing --------------------------------------------------------------------

    async def test_prefix_is_matched_literally(self, store: StateStore, ident: Identity) -> None:
        keys = ["a_b", "axb", "a%c", "abc", "*x", "xx", "?y", "[z]", "z", "a\\b", "ab", "]"]
        for key in keys:
            await _set(store, ident, key, 1)
        scope_key = ident.scope_key()
        assert await store.state_list(scope_key, prefix="a_") == (["a_b"], False)
        assert await store.state_list(scope_key, prefix="a%") == (["a%c"], False)
        assert await store.state_list(scope_key, prefix="*") == (["*x"], False)
        assert await store.state_list(scope_key, prefix="?") == (["?y"], False)
        assert await store.state_list(scope_key, prefix="[") == (["[z]"], False)
        assert await store.state_list(scope_key, prefix="]") == (["]"], False)
        assert await store.state_list(scope_key, prefix="a\\") == (["a\\b"], False)
        assert await store.state_list(scope_key, prefix="nothing") == ([], False)

    async def test_keys_are_listed_in_code_point_order(
        self, store: StateStore, ident: Identity
    ) -> None:
        keys = [
            "b",
            "B",
            "a",
            "é",
            "Z",
            "ä",
            "~",
            "😀",
            "\uffef",
            "a b",
            "a-b",
            "aB",
            "1",
            "_",
            "ab",
        ]
        for key in keys:
            await _set(store, ident, key, 1)
        listed, has_more = await store.state_list(ident.scope_key())
        assert listed == sorted(keys)
        assert has_more is False

    @given(
        keys=st.sets(listing_keys, max_size=12),
        prefix=st.text(prefix_alphabet, max_size=2),
        limit=st.integers(-1, 5),
    )
    @_examples
    async def test_listing_matches_a_sorted_filter(
        self, store: StateStore, keys: set[str], prefix: str, limit: int
    ) -> None:
        ident = new_identity()
        for key in keys:
            await _set(store, ident, key, 1)
        expected = sorted(k for k in keys if k.startswith(prefix))
        page = max(0, limit)
        assert await store.state_list(ident.scope_key(), prefix=prefix, limit=limit) == (
            expected[:page],
            len(expected) > page,
        )

    async def test_limit_is_capped_at_100_with_exact_has_more(
        self, store: StateStore, ident: Identity
    ) -> None:
        await store.apply_updates_from_event(
            ident.event,
            ident.binding,
            ident.descriptor,
            [("conversation", f"k{i:03d}", i) for i in range(101)],
        )
        keys, has_more = await store.state_list(ident.scope_key(), limit=1000)
        assert keys == [f"k{i:03d}" for i in range(100)]
        assert has_more is True
        assert await store.state_delete(ident.scope_key(), "k100")
        keys, has_more = await store.state_list(ident.scope_key(), limit=100)
        assert len(keys) == 100
        assert has_more is False
        assert await store.state_list(ident.scope_key(), limit=0) == ([], True)

    async def test_after_cursor_pages_through_250_keys(
        self, store: StateStore, ident: Identity
    ) -> None:
        expected = sorted(f"item:{i}" for i in range(250))
        await store.apply_updates_from_event(
            ident.event,
            ident.binding,
            ident.descriptor,
            [("conversation", k, {"n": k}) for k in expected],
        )
        seen: list[str] = []
        pages = 0
        after: str | None = None
        while True:
            keys, has_more = await store.state_list(ident.scope_key(), prefix="item:", after=after)
            seen.extend(keys)
            pages += 1
            if not has_more:
                break
            after = keys[-1]
        assert seen == expected
        assert pages == 3

    async def test_after_cursor_need_not_be_a_stored_key(
        self, store: StateStore, ident: Identity
    ) -> None:
        for key in ["a", "b", "c", "d"]:
            await _set(store, ident, key, 1)
        assert await store.state_list(ident.scope_key(), after="bb") == (["c", "d"], False)
        assert await store.state_list(ident.scope_key(), after="d") == ([], False)
        assert await store.state_list(ident.scope_key(), prefix="c", after="a") == (["c"], False)

    # ---- writes ---------------------------------------------------------------------

    async def test_delete_reports_whether_the_key_existed(
        self, store: StateStore, ident: Identity
    ) -> None:
        await _set(store, ident, "k", 1)
        assert await store.state_delete(ident.scope_key(), "k") is True
        assert await store.state_delete(ident.scope_key(), "k") is False
        assert await store.state_get(ident.scope_key(), "k") is None
        assert await store.state_delete(ident.scope_key(), "never") is False

    async def test_concurrent_first_writes_all_succeed_and_one_wins(
        self, store: StateStore, ident: Identity
    ) -> None:
        results = await asyncio.gather(*(_set(store, ident, "race", i) for i in range(20)))
        assert results == [(True, None)] * 20
        assert await store.state_get(ident.scope_key(), "race") in range(20)
        assert await store.state_list(ident.scope_key()) == (["race"], False)

    async def test_update_keeps_created_at_and_moves_updated_at(
        self, store: StateStore, ident: Identity
    ) -> None:
        await _set(store, ident, "k", 1)
        first = (await _entries(store, ident.scope_key()))["k"]
        await asyncio.sleep(0.01)
        await _set(store, ident, "k", 2)
        second = (await _entries(store, ident.scope_key()))["k"]
        assert first.created_at.tzinfo is not None
        assert first.created_at.utcoffset() == timezone.utc.utcoffset(None)
        assert second.created_at == first.created_at
        assert second.updated_at > first.updated_at
        assert json.loads(second.value_json) == 2

    async def test_export_carries_the_scope_context(
        self, store: StateStore, ident: Identity
    ) -> None:
        await store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "actor", "k", [1]
        )
        (entry,) = (await _entries(store, ident.scope_key("actor"))).values()
        ctx = entry.context
        assert (ctx.runner_id, ctx.binding_identity, ctx.scope) == (
            ident.runner_id,
            ident.binding_identity,
            "actor",
        )
        assert (ctx.bot_id, ctx.workspace_id) == ("bot-1", "ws-1")
        assert (ctx.actor_type, ctx.actor_id) == (
            "user",
            ident.event.actor.actor_id if ident.event.actor else None,
        )
        assert ctx.conversation_id == ident.event.conversation_id
        assert (ctx.subject_type, ctx.subject_id) == (
            "ticket",
            ident.event.subject.subject_id if ident.event.subject else None,
        )
        assert json.loads(entry.value_json) == [1]

    async def test_context_keeps_the_scope_identity_whoever_writes(
        self, store: StateStore, ident: Identity
    ) -> None:
        """Two conversations of one actor write to the same actor scope.

        The fields hashed into the scope key agree for every entry; a field outside it (the
        conversation, for an actor scope) comes whole from one of the writes: the entry's
        first write on some backends, the scope's first write on others.
        """
        elsewhere = ident.event.model_copy(update={"conversation_id": "conv-elsewhere"})
        assert build_state_scope_key(
            "actor", elsewhere, ident.binding, ident.descriptor
        ) == ident.scope_key("actor")
        for event, key in ((ident.event, "first"), (elsewhere, "second")):
            ok = await store.apply_update_from_event(
                event, ident.binding, ident.descriptor, "actor", key, key
            )
            assert ok == (True, None)
        entries = await _entries(store, ident.scope_key("actor"))
        assert sorted(entries) == ["first", "second"]
        actor = ident.event.actor
        subject = ident.event.subject
        assert actor is not None
        assert subject is not None
        for entry in entries.values():
            ctx = entry.context
            assert (ctx.runner_id, ctx.binding_identity, ctx.scope) == (
                ident.runner_id,
                ident.binding_identity,
                "actor",
            )
            assert (ctx.bot_id, ctx.workspace_id, ctx.actor_type, ctx.actor_id) == (
                "bot-1",
                "ws-1",
                "user",
                actor.actor_id,
            )
            assert (ctx.conversation_id, ctx.subject_id) in {
                (ident.event.conversation_id, subject.subject_id),
                ("conv-elsewhere", subject.subject_id),
            }

    async def test_state_set_stores_the_given_context(
        self, store: StateStore, ident: Identity
    ) -> None:
        ok = await store.state_set(
            ident.scope_key(),
            "k",
            1,
            "r-1",
            "b-1",
            "conversation",
            context={"bot_id": "bot-9", "thread_id": "t-1"},
        )
        assert ok == (True, None)
        (entry,) = (await _entries(store, ident.scope_key())).values()
        assert entry.context.as_dict() == {
            "runner_id": "r-1",
            "binding_identity": "b-1",
            "scope": "conversation",
            "bot_id": "bot-9",
            "workspace_id": None,
            "conversation_id": None,
            "thread_id": "t-1",
            "actor_type": None,
            "actor_id": None,
            "subject_type": None,
            "subject_id": None,
        }

    async def test_batch_applies_valid_updates_and_reports_refusals_by_index(
        self, store: StateStore, ident: Identity
    ) -> None:
        results = await store.apply_updates_from_event(
            ident.event,
            ident.binding,
            ident.descriptor,
            [
                StateUpdate("conversation", "a", 1),
                ("actor", "b", math.nan),
                {"scope": "global", "key": "c", "value": 3},
                ("runner", "d", 4),
                ("conversation", "a", 5),
                ("subject", "", 6),
            ],
        )
        assert results[0] == (True, None)
        assert results[3] == (True, None)
        assert results[4] == (True, None)
        assert results[1][0] is False
        assert str(results[1][1]).startswith("Value is not JSON-serializable")
        assert results[2] == (False, "Invalid scope: global")
        assert results[5][0] is False
        assert await store.state_get(ident.scope_key(), "a") == 5
        assert await store.state_get(ident.scope_key("runner"), "d") == 4
        assert await store.state_get(ident.scope_key("actor"), "b") is None

    async def test_clear_all_removes_every_entry(self, store: StateStore) -> None:
        idents = [new_identity() for _ in range(3)]
        for ident in idents:
            await store.apply_update_from_event(
                ident.event, ident.binding, ident.descriptor, "conversation", "k", 1
            )
            await store.apply_update_from_event(
                ident.event, ident.binding, ident.descriptor, "runner", "k", 1
            )
        await store.clear_all()
        for ident in idents:
            assert await store.state_get(ident.scope_key(), "k") is None
            assert await store.state_list(ident.scope_key("runner")) == ([], False)
        assert [e async for e in store.export()] == []

    # ---- versions (Capability.VERSIONS) ---------------------------------------------

    async def test_versions_start_at_one_and_grow_per_write(
        self, store: StateStore, backend: StateBackend, ident: Identity
    ) -> None:
        self.require(backend, Capability.VERSIONS)
        assert await store.state_get_versioned(ident.scope_key(), "k") == (None, 0)
        await _set(store, ident, "k", "a")
        assert await store.state_get_versioned(ident.scope_key(), "k") == ("a", 1)
        await _set(store, ident, "k", "b")
        assert await store.state_get_versioned(ident.scope_key(), "k") == ("b", 2)
        assert (await _entries(store, ident.scope_key()))["k"].version == 2

    async def test_conditional_set_refuses_a_stale_version(
        self, store: StateStore, backend: StateBackend, ident: Identity
    ) -> None:
        self.require(backend, Capability.VERSIONS)
        scope_key = ident.scope_key()
        args = (ident.runner_id, ident.binding_identity, "conversation")
        assert await store.state_set(scope_key, "k", "first", *args, expected_version=0) == (
            True,
            None,
        )
        ok, error = await store.state_set(scope_key, "k", "again", *args, expected_version=0)
        assert not ok
        assert error is not None
        assert error.startswith("Version conflict")
        assert await store.state_set(scope_key, "k", "second", *args, expected_version=1) == (
            True,
            None,
        )
        ok, error = await store.state_set(scope_key, "k", "stale", *args, expected_version=1)
        assert not ok
        assert error == "Version conflict on 'k': expected version 1, found 2"
        assert await store.state_get_versioned(scope_key, "k") == ("second", 2)

    async def test_delete_resets_the_version(
        self, store: StateStore, backend: StateBackend, ident: Identity
    ) -> None:
        self.require(backend, Capability.VERSIONS)
        await _set(store, ident, "k", 1)
        await store.state_delete(ident.scope_key(), "k")
        args = (ident.runner_id, ident.binding_identity, "conversation")
        assert await store.state_set(ident.scope_key(), "k", 2, *args, expected_version=0) == (
            True,
            None,
        )
        assert await store.state_get_versioned(ident.scope_key(), "k") == (2, 1)

    async def test_concurrent_increments_with_retry_lose_nothing(
        self, store: StateStore, backend: StateBackend, ident: Identity
    ) -> None:
        self.require(backend, Capability.VERSIONS)
        scope_key = ident.scope_key()
        args = (ident.runner_id, ident.binding_identity, "conversation")

        async def increment() -> int:
            for attempt in range(1, 1000):
                value, version = await store.state_get_versioned(scope_key, "counter")
                ok, _ = await store.state_set(
                    scope_key, "counter", (value or 0) + 1, *args, expected_version=version
                )
                if ok:
                    return attempt
                await asyncio.sleep(0)
            raise AssertionError("increment never succeeded")

        await asyncio.gather(*(increment() for _ in range(32)))
        assert await store.state_get_versioned(scope_key, "counter") == (32, 32)
