"""The behaviour every backend shares, written against :class:`statekit.StateStore`.

Each test states one rule of the contract (see DESIGN.md, "Semantics every backend must
share"). Tests use fresh random identities, so a backend fixture on a shared server only
has to clean up what it wrote; ``clear_all`` is only exercised on the fixture's own
backend, which must own a private prefix, table or database.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from statekit.backends.base import (
    OPTIONAL_CONTEXT_FIELDS,
    Capability,
    ScopeContext,
    StateBackend,
    StateWrite,
    VersionedBackend,
)
from statekit.errors import StoreClosedError
from statekit.scope import VALID_STATE_SCOPES
from statekit.store import StateStore
from statekit.testing.fuzz import FuzzContract
from statekit.testing.identities import Identity, new_identity, put, scope_entries
from statekit.testing.isolation import IsolationContract
from statekit.testing.listing import ListingContract
from statekit.testing.strategies import io_examples, json_values
from statekit.testing.versions import VersionsContract
from statekit.testing.writes import WritesContract
from statekit.validation import (
    MAX_CONTEXT_FIELD_LENGTH,
    MAX_SCOPE_KEY_LENGTH,
    MAX_STATE_KEY_LENGTH,
    MAX_VALUE_JSON_BYTES,
)


async def assert_all_refused_as_closed(calls: dict[str, Callable[[], Awaitable[Any]]]) -> None:
    """Every call raises :class:`StoreClosedError` (made after ``aclose()``), else the
    assertion names each that returned or raised something else."""
    wrong: dict[str, str] = {}
    for name, call in calls.items():
        try:
            await call()
        except StoreClosedError:
            continue
        except Exception as exc:
            wrong[name] = f"raised {exc!r}"
        else:
            wrong[name] = "returned"
    assert not wrong, f"calls after aclose() that did not raise StoreClosedError: {wrong}"


def _text_of(length: int, tag: str) -> str:
    """``length`` characters starting with ``tag``, padded with characters of 2, 3 and 4
    UTF-8 bytes: a backend that counts bytes where the limit counts characters fails."""
    return (tag + "é中😀" * length)[:length]


# Marked, so the suite runs under pytest-asyncio's default strict mode as well as "auto".
@pytest.mark.asyncio
class StateBackendContract(
    ListingContract, WritesContract, VersionsContract, IsolationContract, FuzzContract
):
    """Subclass with a ``backend`` fixture yielding a fresh backend; see :mod:`statekit.testing`."""

    if not TYPE_CHECKING:
        # Hidden from type checkers: each subclass's fixture takes its own arguments
        # (tmp_path, request, a parameter...), which no signature here could allow.
        @pytest.fixture
        def backend(self) -> StateBackend:  # pragma: no cover - replaced by subclasses
            raise NotImplementedError("provide a `backend` fixture")

    @pytest_asyncio.fixture
    async def store(self, backend: StateBackend) -> AsyncIterator[StateStore]:
        yield StateStore(backend)

    @pytest.fixture
    def ident(self) -> Identity:
        return new_identity()

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
        assert await put(store, ident, "k", value) == (True, None)
        assert await store.state_get(ident.scope_key(), "k") == value
        stored = await store.state_get(ident.scope_key(), "k")
        assert type(stored) is type(value)

    async def test_unicode_keys_and_values_round_trip(
        self, store: StateStore, ident: Identity
    ) -> None:
        values = {"ключ": "значение", "键": "中文", "🔑": "😀 emoji", "é": {"ü": ["ß"]}}
        for key, value in values.items():
            assert await put(store, ident, key, value) == (True, None)
        for key, value in values.items():
            assert await store.state_get(ident.scope_key(), key) == value

    async def test_value_of_exactly_the_limit_is_accepted(
        self, store: StateStore, ident: Identity
    ) -> None:
        value = "x" * (MAX_VALUE_JSON_BYTES - 2)  # two quote characters
        assert await put(store, ident, "big", value) == (True, None)
        assert await store.state_get(ident.scope_key(), "big") == value

    @given(value=json_values)
    @io_examples
    async def test_any_json_value_round_trips(self, store: StateStore, value: Any) -> None:
        ident = new_identity()
        assert await put(store, ident, "v", value) == (True, None)
        assert await store.state_get(ident.scope_key(), "v") == json.loads(json.dumps(value))

    async def test_every_limit_the_store_accepts_is_stored(self, store: StateStore) -> None:
        """Scope key, state key, value and every context field, each at its maximum."""
        tag = new_identity().runner_id
        scope_key = _text_of(MAX_SCOPE_KEY_LENGTH, f"conversation:{tag}:")
        key = _text_of(MAX_STATE_KEY_LENGTH, "k")
        value = _text_of(MAX_VALUE_JSON_BYTES // 4, "v")  # about 3/4 of the limit
        value += "x" * (MAX_VALUE_JSON_BYTES - len(json.dumps(value, ensure_ascii=False).encode()))
        context = {
            name: _text_of(MAX_CONTEXT_FIELD_LENGTH, name) for name in OPTIONAL_CONTEXT_FIELDS
        }
        runner_id = _text_of(MAX_CONTEXT_FIELD_LENGTH, tag)
        binding_identity = _text_of(MAX_CONTEXT_FIELD_LENGTH, "binding")
        assert len(json.dumps(value, ensure_ascii=False).encode("utf-8")) == MAX_VALUE_JSON_BYTES
        ok = await store.state_set(
            scope_key, key, value, runner_id, binding_identity, "conversation", context
        )
        assert ok == (True, None)
        assert await store.state_get(scope_key, key) == value
        assert await store.state_list(scope_key) == ([key], False)
        entry = (await scope_entries(store, scope_key))[key]
        assert entry.context.as_dict() == {
            "runner_id": runner_id,
            "binding_identity": binding_identity,
            "scope": "conversation",
            **context,
        }
        assert await store.state_delete(scope_key, key) is True

    # ---- keys -----------------------------------------------------------------------

    async def test_key_of_maximum_length_is_accepted(
        self, store: StateStore, ident: Identity
    ) -> None:
        key = "k" * MAX_STATE_KEY_LENGTH
        assert await put(store, ident, key, 1) == (True, None)
        assert await store.state_get(ident.scope_key(), key) == 1

    @given(key=st.text(max_size=300))
    @io_examples
    async def test_key_is_accepted_iff_it_follows_the_rules(
        self, store: StateStore, key: str
    ) -> None:
        ident = new_identity()
        valid = 0 < len(key) <= MAX_STATE_KEY_LENGTH and not any(
            ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in key
        )
        ok, _ = await put(store, ident, key, "v")
        assert ok is valid
        stored_key = "external.conversation_id" if key == "conversation_id" else key
        assert (await store.state_get(ident.scope_key(), key) == "v") is valid
        assert (await store.state_list(ident.scope_key()))[0] == ([stored_key] if valid else [])

    async def test_alias_applies_to_get_set_delete_and_prefix(
        self, store: StateStore, ident: Identity
    ) -> None:
        scope_key = ident.scope_key()
        assert await put(store, ident, "conversation_id", "c-1") == (True, None)
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

    # ---- lifecycle --------------------------------------------------------------------

    async def test_every_call_after_aclose_raises_store_closed(
        self, backend: StateBackend, ident: Identity
    ) -> None:
        """After ``aclose()`` every method raises :class:`StoreClosedError` (never a
        reconnect, never a "retry later" error); ``aclose()`` itself stays idempotent.

        The fixture's teardown meets a closed backend: its ``clear()`` must let
        ``StoreClosedError`` pass (this test writes nothing that outlives it)."""
        scope_key = ident.scope_key()
        context = ScopeContext("runner", "binding", "runner")
        await backend.set(StateWrite(scope_key, "k", "1", context))  # connections are open now
        assert await backend.delete(scope_key, "k") is True
        # The scope's bookkeeping (a Redis identity index, say) outlives its last entry:
        # cleared here, as the fixture's teardown cannot once the backend is closed.
        await backend.clear()
        await backend.aclose()
        await backend.aclose()

        async def drain() -> None:
            async for _ in backend.iter_entries():
                pass

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "get": lambda: backend.get(scope_key, "k"),
            "read_scopes": lambda: backend.read_scopes([scope_key]),
            "set": lambda: backend.set(StateWrite(scope_key, "k", "2", context)),
            "set_many": lambda: backend.set_many([StateWrite(scope_key, "k", "3", context)]),
            "delete": lambda: backend.delete(scope_key, "k"),
            "list_keys": lambda: backend.list_keys(scope_key, "", 10, None),
            "iter_entries": drain,
            "clear": backend.clear,
            "describe": backend.describe,
        }
        if Capability.VERSIONS in backend.capabilities:
            versioned = cast(VersionedBackend, backend)
            calls["get_versioned"] = lambda: versioned.get_versioned(scope_key, "k")
        await assert_all_refused_as_closed(calls)
