"""Refusals the store makes before any backend call, checked once, on the memory backend.

They are the store's own rules (key and value rules, scopes, policy, context, batch
shapes): no backend can change their outcome, so they are not part of the contract suite
``statekit.testing`` that runs on every backend. Each test also checks that the refused
write never reached the backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest

from statekit import MemoryBackend, StateStore, validation
from statekit.backends.base import StateWrite
from statekit.errors import UnsupportedCapabilityError
from statekit.testing import Identity, new_identity
from statekit.testing.fuzz import check_calls
from statekit.testing.hostile import hostile_sweep
from statekit.testing.identities import put
from statekit.validation import MAX_STATE_KEY_LENGTH, MAX_VALUE_JSON_BYTES

pytestmark = pytest.mark.memory


class RecordingBackend(MemoryBackend):
    """The memory backend, remembering every write that reached it as ``(method, state_key)``."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str]] = []

    async def set(self, write: StateWrite, expected_version: int | None = None) -> int:
        self.writes.append(("set", write.state_key))
        return await super().set(write, expected_version)

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        for write in writes:
            await self.set(write)

    async def delete(self, scope_key: str, state_key: str) -> bool:
        self.writes.append(("delete", state_key))
        return await super().delete(scope_key, state_key)


class UnversionedBackend(RecordingBackend):
    """Declares no optional capability, as a minimal third-party backend might."""

    capabilities = frozenset()


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


@pytest.fixture
def store(backend: RecordingBackend) -> StateStore:
    return StateStore(backend)


@pytest.fixture
def ident() -> Identity:
    return new_identity()


# ---- values -----------------------------------------------------------------------------


async def test_value_one_byte_over_the_limit_is_refused_and_not_written(
    store: StateStore, backend: RecordingBackend, ident: Identity
) -> None:
    ok, error = await put(store, ident, "big", "x" * (MAX_VALUE_JSON_BYTES - 1))
    assert not ok
    limit = MAX_VALUE_JSON_BYTES
    assert error == f"Value size {limit + 1} bytes exceeds limit {limit} bytes"
    assert await store.state_get(ident.scope_key(), "big") is None
    assert await store.state_list(ident.scope_key()) == ([], False)
    assert backend.writes == []


async def test_size_limit_counts_utf8_bytes(
    store: StateStore, backend: RecordingBackend, ident: Identity
) -> None:
    # "é" is two bytes: (MAX - 2) / 2 of them fill the limit exactly, one more exceeds it.
    fits = "é" * ((MAX_VALUE_JSON_BYTES - 2) // 2)
    assert await put(store, ident, "fits", fits) == (True, None)
    ok, error = await put(store, ident, "over", fits + "é")
    assert not ok
    assert error is not None
    assert "exceeds limit" in error
    assert backend.writes == [("set", "fits")]


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        {1, 2},
        b"bytes",
        object(),
        "lone \ud800 surrogate",
        {"nested": [math.nan]},
        {1: "int key"},
        {("t",): "tuple key"},
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "set",
        "bytes",
        "object",
        "surrogate",
        "nested-nan",
        "int-key",
        "tuple-key",
    ],
)
async def test_refused_value_writes_nothing(
    store: StateStore, backend: RecordingBackend, ident: Identity, value: Any
) -> None:
    assert await put(store, ident, "k", "before") == (True, None)
    ok, error = await put(store, ident, "k", value)
    assert not ok
    assert error is not None
    assert error.startswith("Value is not JSON-serializable: ")
    assert await store.state_get(ident.scope_key(), "k") == "before"
    assert backend.writes == [("set", "k")]


async def test_circular_value_is_refused(
    store: StateStore, backend: RecordingBackend, ident: Identity
) -> None:
    loop: list[Any] = []
    loop.append(loop)
    ok, error = await put(store, ident, "k", loop)
    assert not ok
    assert error is not None
    assert error.startswith("Value is not JSON-serializable")
    assert await store.state_get(ident.scope_key(), "k") is None
    assert backend.writes == []


# ---- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "x" * (MAX_STATE_KEY_LENGTH + 1),
        "nul\x00",
        "new\nline",
        "tab\t",
        "del\x7f",
        "c1\x85",
        "lone\udc00",
        42,
        None,
    ],
    ids=["empty", "too-long", "nul", "newline", "tab", "del", "c1", "surrogate", "int", "none"],
)
async def test_invalid_key_is_refused_everywhere(
    store: StateStore, backend: RecordingBackend, ident: Identity, key: Any
) -> None:
    ok, error = await put(store, ident, key, 1)
    assert not ok
    assert error is not None
    assert error.startswith("State key")
    assert await store.state_get(ident.scope_key(), key) is None
    assert await store.state_delete(ident.scope_key(), key) is False
    assert await store.state_list(ident.scope_key(), prefix=key) == ([], False)
    assert await store.state_list(ident.scope_key()) == ([], False)
    ok, error = await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "conversation", key, 1
    )
    assert not ok
    assert error is not None
    assert error.startswith("State key")
    assert backend.writes == []


# ---- event API: policy and identity ------------------------------------------------------


async def test_disabled_policy_refuses_updates_and_snapshots_empty(
    store: StateStore, backend: RecordingBackend
) -> None:
    enabled = new_identity()
    await store.apply_update_from_event(
        enabled.event, enabled.binding, enabled.descriptor, "conversation", "k", 1
    )
    disabled_binding = enabled.binding.model_copy(
        update={
            "state_policy": enabled.binding.state_policy.model_copy(update={"enable_state": False})
        }
    )
    ok = await store.apply_update_from_event(
        enabled.event, disabled_binding, enabled.descriptor, "conversation", "k", 2
    )
    assert ok == (False, "State is disabled by binding policy")
    snapshot = await store.build_snapshot_from_event(
        enabled.event, disabled_binding, enabled.descriptor
    )
    assert snapshot == {"conversation": {}, "actor": {}, "subject": {}, "runner": {}}
    assert await store.state_get(enabled.scope_key(), "k") == 1
    assert backend.writes == [("set", "k")]


async def test_scope_outside_policy_is_refused_and_not_snapshotted(
    store: StateStore, backend: RecordingBackend
) -> None:
    ident = new_identity(scopes=("conversation", "actor"))
    ok = await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "subject", "k", 1
    )
    assert ok == (False, 'Scope "subject" not enabled by binding policy')
    assert backend.writes == []
    # Written through the State API, subject state exists but the policy hides it.
    await put(store, ident, "k", 1, scope="subject")
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert snapshot["subject"] == {}
    assert snapshot["runner"] == {}


async def test_invalid_scope_is_refused(
    store: StateStore, backend: RecordingBackend, ident: Identity
) -> None:
    ok = await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "global", "k", 1
    )
    assert ok == (False, "Invalid scope: global")
    ok = await store.state_set(
        ident.scope_key(), "k", 1, ident.runner_id, ident.binding_identity, "global"
    )
    assert ok == (False, "Invalid scope: global")
    assert await store.state_get(ident.scope_key(), "k") is None
    assert backend.writes == []


async def test_missing_identity_is_refused(store: StateStore, backend: RecordingBackend) -> None:
    ident = new_identity(conversation_id="")
    ok = await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "conversation", "k", 1
    )
    assert ok == (False, 'Missing identity for scope "conversation"')
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert snapshot["conversation"] == {}
    assert backend.writes == []


# ---- context and batches ----------------------------------------------------------------


@pytest.mark.parametrize(
    "context",
    [{"bot_id": "b" * 256}, {"thread_id": "nul\x00"}, {"actor_id": "lone \ud800"}],
    ids=["too-long", "nul", "surrogate"],
)
async def test_unstorable_context_is_refused_and_not_written(
    store: StateStore, backend: RecordingBackend, ident: Identity, context: dict[str, str]
) -> None:
    args = (ident.runner_id, ident.binding_identity, "conversation")
    ok, error = await store.state_set(ident.scope_key(), "k", 1, *args, context=context)
    assert not ok
    assert error is not None
    assert error.startswith("Context field ")
    assert await store.state_get(ident.scope_key(), "k") is None
    assert backend.writes == []


async def test_event_id_too_long_to_store_is_refused(
    store: StateStore, backend: RecordingBackend
) -> None:
    ident = new_identity(conversation_id="c" * 300)
    ok, error = await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "conversation", "k", 1
    )
    assert (ok, error) == (
        False,
        'Context field "conversation_id" must be at most 255 characters '
        "without NUL or lone surrogates",
    )
    assert await store.state_list(ident.scope_key()) == ([], False)
    assert backend.writes == []


async def test_an_unstorable_event_id_is_refused_after_the_value_on_every_call(
    store: StateStore, backend: RecordingBackend
) -> None:
    # The context is checked after the value, however often the same event writes.
    ident = new_identity(conversation_id="c" * 300)
    args = (ident.event, ident.binding, ident.descriptor, "conversation", "k")
    for _ in range(2):
        ok, error = await store.apply_update_from_event(*args, {1: "a"})
        assert (ok, error) == (
            False,
            "Value is not JSON-serializable: object keys must be strings, not int",
        )
        ok, error = await store.apply_update_from_event(*args, 1)
        assert not ok
        assert error is not None
        assert error.startswith('Context field "conversation_id" must be at most 255')
    assert backend.writes == []


async def test_batch_of_only_refusals_writes_nothing(
    store: StateStore, backend: RecordingBackend, ident: Identity
) -> None:
    results = await store.apply_updates_from_event(
        ident.event, ident.binding, ident.descriptor, [("global", "a", 1)]
    )
    assert results == [(False, "Invalid scope: global")]
    assert await store.state_list(ident.scope_key()) == ([], False)
    assert backend.writes == []


# ---- versions and hostile arguments ----------------------------------------------------


async def test_undeclared_versions_are_refused_clearly(ident: Identity) -> None:
    backend = UnversionedBackend()
    store = StateStore(backend)
    with pytest.raises(UnsupportedCapabilityError):
        await store.state_get_versioned(ident.scope_key(), "k")
    with pytest.raises(UnsupportedCapabilityError):
        await store.state_set(
            ident.scope_key(), "k", 1, "r", "b", "conversation", expected_version=0
        )
    assert backend.writes == []


@pytest.mark.parametrize("versioned", [True, False], ids=["versions", "no-versions"])
@pytest.mark.parametrize("has_subject", [True, False])
async def test_every_hostile_argument_refuses_cleanly(versioned: bool, has_subject: bool) -> None:
    """Each hostile argument of every method at least once, the others valid, interleaved
    with valid writes so that refusals are checked against stored data. The contract suite
    runs the calls of this sweep that reach a backend on every backend."""
    scopes = ("conversation", "actor", "runner")
    ident = new_identity(scopes) if has_subject else new_identity(scopes, subject_id=None)
    store = StateStore(RecordingBackend() if versioned else UnversionedBackend())
    await check_calls(store, ident, hostile_sweep(), versioned=versioned)


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (lambda: validation.check_state_key(""), "key"),
        (lambda: validation.check_state_key("k" * (MAX_STATE_KEY_LENGTH + 1)), "key"),
        (lambda: validation.check_state_key(3), "key"),
        (lambda: validation.check_prefix("a\x00"), "key"),
        (lambda: validation.check_scope_key(""), "scope_key"),
        (lambda: validation.check_scope("pipeline"), "scope"),
        (lambda: validation.encode_value(math.nan), "value"),
        (lambda: validation.encode_value(object()), "value"),
        (lambda: validation.encode_value("x" * (MAX_VALUE_JSON_BYTES + 1)), "value_size"),
        (lambda: validation.encode_value([["x" * 1000] * 1000] * 200), "value_size"),
        (lambda: validation.check_limit("10"), "argument"),
        (lambda: validation.check_expected_version(-1), "argument"),
    ],
)
def test_each_refusal_carries_its_class(check: Any, reason: str) -> None:
    """The class is what logs and metrics carry instead of the message, which may quote
    the input: it must be the class of the rule that refused, from the fixed set."""
    with pytest.raises(validation.Refusal) as refused:
        check()
    assert refused.value.reason == reason
    assert reason in validation.REFUSAL_REASONS
