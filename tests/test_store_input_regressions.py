"""Inputs that once escaped the store as exceptions instead of documented refusals."""

from __future__ import annotations

import json
import math
import re
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from services import open_target

from benchmarks.matrix import MEMORY, POSTGRES, REDIS, SQLITE
from statekit import MAX_VALUE_DEPTH, MAX_VALUE_JSON_BYTES, MemoryBackend, ScopeContext, StateStore
from statekit.backends.base import StateWrite
from statekit.testing import Identity, new_identity


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def store() -> StateStore:
    return StateStore(MemoryBackend())


@pytest.fixture(
    params=[
        pytest.param(target, marks=getattr(pytest.mark, target.marker), id=target.name)
        for target in (MEMORY, SQLITE, REDIS, POSTGRES)
    ]
)
async def any_store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    """A store on each backend: the refusals below come before any I/O, so every backend
    must give them alike, and none of them may reach the storage."""
    async with open_target(request.param, request) as backend:
        yield StateStore(backend)


@pytest.mark.parametrize("prefix", [["a"], {"a": 1}, {"a"}, 5, b"a"])
async def test_list_with_a_non_string_prefix_is_refused(store: StateStore, prefix: Any) -> None:
    # An unhashable prefix used to raise TypeError from the key-alias lookup.
    ident = new_identity()
    await store.state_set(ident.scope_key(), "a", 1, "r", "b", "conversation")
    assert await store.state_list(ident.scope_key(), prefix=prefix) == ([], False)


@pytest.mark.parametrize("context", ["bot_id=1", ["bot_id"], 5])
async def test_set_with_a_non_mapping_context_is_refused(store: StateStore, context: Any) -> None:
    # A non-mapping context used to raise AttributeError after validation had passed.
    ident = new_identity()
    result = await store.state_set(
        ident.scope_key(), "k", 1, "r", "b", "conversation", context=context
    )
    assert result == (False, f"context must be a mapping, not {type(context).__name__}")
    assert await store.state_get(ident.scope_key(), "k") is None


@pytest.mark.parametrize("expected_version", [2**63, 2**70, -1])
async def test_expected_version_outside_64_bits_is_refused(
    store: StateStore, expected_version: int
) -> None:
    # Versions are signed 64-bit on every backend: a larger one cannot be compared there.
    ident = new_identity()
    result = await store.state_set(
        ident.scope_key(), "k", 1, "r", "b", "conversation", expected_version=expected_version
    )
    assert result == (
        False,
        f"expected_version must be an integer from 0 to 2**63 - 1, not {expected_version!r}",
    )
    assert await store.state_get(ident.scope_key(), "k") is None


async def test_largest_expected_version_is_a_plain_conflict(store: StateStore) -> None:
    ident = new_identity()
    ok, error = await store.state_set(
        ident.scope_key(), "k", 1, "r", "b", "conversation", expected_version=2**63 - 1
    )
    assert not ok
    assert error == f"Version conflict on 'k': expected version {2**63 - 1}, found 0"


async def test_value_nested_deeper_than_the_limit_is_refused(store: StateStore) -> None:
    # Python's json accepted ~990 levels on write but could not read them back from a
    # deeper call stack: state_get raised RecursionError.
    ident = new_identity()
    ok, error = await store.state_set(
        ident.scope_key(), "k", _nested(MAX_VALUE_DEPTH + 1), "r", "b", "conversation"
    )
    assert not ok
    assert error == f"Value is not JSON-serializable: nested deeper than {MAX_VALUE_DEPTH} levels"
    assert await store.state_get(ident.scope_key(), "k") is None


async def test_value_at_the_depth_limit_reads_back_from_a_deep_call_stack(
    store: StateStore,
) -> None:
    ident = new_identity()
    value = _nested(MAX_VALUE_DEPTH)
    assert await store.state_set(ident.scope_key(), "k", value, "r", "b", "conversation") == (
        True,
        None,
    )

    async def read(levels: int) -> Any:
        return await (read(levels - 1) if levels else store.state_get(ident.scope_key(), "k"))

    assert await read(300) == value


async def test_stored_json_too_deep_to_decode_is_skipped_not_raised(store: StateStore) -> None:
    # Rows written by another process (or a Python with a higher recursion limit).
    ident = new_identity()
    deep = "[" * 5000 + "]" * 5000
    context = ScopeContext("r", "b", "conversation")
    await store.backend.set(StateWrite(ident.scope_key(), "deep", deep, context))
    await store.backend.set(StateWrite(ident.scope_key(), "ok", json.dumps(1), context))
    assert await store.state_get(ident.scope_key(), "deep") is None
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    assert snapshot["conversation"] == {
        "ok": 1,
        "external.conversation_id": ident.event.conversation_id,
    }


def _spine(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# Small object graphs whose JSON text is huge: each shares references, so the value takes
# a few KB of memory while its text takes from 200 MB to far more than any machine has.
_AMPLIFIED: dict[str, Callable[[], Any]] = {
    "issue": lambda: [["x" * 1000] * 1000] * 200,
    "shared-ints": lambda: [[0] * 1000] * 1000,
    "big-ints": lambda: [10**4000] * 10_000,
    "long-keys": lambda: [{"k" * 10_000: "v" * 10_000}] * 10_000,
    "chain": lambda: _spine(
        0, [[[[[[[[[["x"] * 10] * 10] * 10] * 10] * 10] * 10] * 10] * 10] * 10]
    ),
    "deep-spine": lambda: _spine(500, [[0] * 1000] * 1000),
    "escapes": lambda: [["\x00" * 1000] * 1000] * 200,
}


async def _refused_with_peak(store: StateStore, value: Any) -> tuple[str | None, int]:
    ident = new_identity()
    tracemalloc.start()
    try:
        ok, error = await store.state_set(ident.scope_key(), "k", value, "r", "b", "conversation")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not ok
    assert await store.state_get(ident.scope_key(), "k") is None
    return error, peak


def _assert_refused_past_the_limit(error: str | None) -> None:
    assert error is not None
    pattern = rf"Value size at least (\d+) bytes exceeds limit {MAX_VALUE_JSON_BYTES} bytes"
    match = re.fullmatch(pattern, error)
    assert match is not None, error
    assert int(match[1]) > 2 * MAX_VALUE_JSON_BYTES


@pytest.mark.parametrize("shape", _AMPLIFIED)
async def test_amplified_value_is_refused_in_memory_bounded_by_the_limit(
    store: StateStore, shape: str
) -> None:
    # The whole text used to be built before the size check: 200 MB and ~380 MB of peak
    # memory for the value, and no bound at all for the others.
    error, peak = await _refused_with_peak(store, _AMPLIFIED[shape]())
    _assert_refused_past_the_limit(error)
    assert peak < 16 * MAX_VALUE_JSON_BYTES


async def test_amplified_value_is_refused_alike_on_every_backend(any_store: StateStore) -> None:
    error, peak = await _refused_with_peak(any_store, _AMPLIFIED["issue"]())
    _assert_refused_past_the_limit(error)
    assert peak < 16 * MAX_VALUE_JSON_BYTES


async def test_amplified_value_through_an_event_is_refused_the_same_way(
    any_store: StateStore,
) -> None:
    ident = new_identity()
    value = _AMPLIFIED["issue"]()
    ok, error = await any_store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "conversation", "k", value
    )
    assert not ok
    assert error is not None
    assert error.startswith("Value size at least ")
    results = await any_store.apply_updates_from_event(
        ident.event,
        ident.binding,
        ident.descriptor,
        [("conversation", "k", value), ("conversation", "ok", 1)],
    )
    assert results[0][0] is False
    assert results[1] == (True, None)
    assert await any_store.state_get(ident.scope_key(), "k") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # Sizes up to twice the limit are counted to the end, past the last kept byte.
        ({"k" * MAX_VALUE_JSON_BYTES: 1}, f"Value size {MAX_VALUE_JSON_BYTES + 6} bytes"),
        (_spine(600, "x" * 300_000), "Value size 301202 bytes"),
        # An error found past the limit is the error, as when the text was made whole.
        (["x" * 300_000, math.nan], "Value is not JSON-serializable: Out of range float values"),
        (["x" * 300_000, object()], "Value is not JSON-serializable: Object of type object"),
        (
            ["y" * 300_000, "\ud800"],
            "Value is not JSON-serializable: 'utf-8' codec can't encode "
            "character '\\ud800' in position 300005",
        ),
    ],
)
async def test_large_values_keep_the_refusals_they_had(
    any_store: StateStore, value: Any, message: str
) -> None:
    ident = new_identity()
    ok, error = await any_store.state_set(ident.scope_key(), "k", value, "r", "b", "conversation")
    assert not ok
    assert error is not None
    assert error.startswith(message)


# ---- context values whose text cannot be made ----------------------------------------


class _NoText:
    """An id whose ``__str__`` raises, as a host's own id type might."""

    def __str__(self) -> str:
        raise RuntimeError("no text for this id")


def _textless(kind: str) -> Any:
    # Built here: pytest cannot print 10**5000 as a test id.
    return 10**5000 if kind == "huge-int" else _NoText()


_TEXTLESS = ["huge-int", "raising-str"]
_TEXTLESS_NAMES = {"huge-int": "int", "raising-str": "_NoText"}


def _refusal(field: str, kind: str) -> tuple[bool, str]:
    return False, f'Context field "{field}" has no storable text ({_TEXTLESS_NAMES[kind]} value)'


@pytest.mark.parametrize("kind", _TEXTLESS)
@pytest.mark.parametrize("field", ["bot_id", "thread_id", "subject_id"])
async def test_state_set_refuses_a_context_value_without_text(
    any_store: StateStore, field: str, kind: str
) -> None:
    # str(10**5000) raised ValueError (the int-to-str digit limit) out of state_set.
    ident = new_identity()
    result = await any_store.state_set(
        ident.scope_key(), "k", 1, "r", "b", "conversation", context={field: _textless(kind)}
    )
    assert result == _refusal(field, kind)
    assert await any_store.state_list(ident.scope_key()) == ([], False)


def _event_with(ident: Identity, field: str, value: Any) -> Any:
    part, _, name = field.rpartition(".")
    if not part:
        return ident.event.model_copy(update={field: value})
    owner = getattr(ident.event, part)
    return ident.event.model_copy(update={part: owner.model_copy(update={name: value})})


# Fields hashed into the scope key (JSON of the id failed) and fields only stored in the
# context (str() of the id failed): either kind is the same refusal.
_EVENT_FIELDS = [
    ("bot_id", "conversation"),
    ("conversation_id", "conversation"),
    ("actor.actor_id", "actor"),
    ("subject.subject_id", "conversation"),
    ("thread_id", "actor"),
]


@pytest.mark.parametrize("kind", _TEXTLESS)
@pytest.mark.parametrize(("field", "scope"), _EVENT_FIELDS)
async def test_event_writes_refuse_an_id_without_text(
    any_store: StateStore, field: str, scope: str, kind: str
) -> None:
    ident = new_identity()
    event = _event_with(ident, field, _textless(kind))
    expected = _refusal(field.rpartition(".")[2], kind)
    applied = await any_store.apply_update_from_event(
        event, ident.binding, ident.descriptor, scope, "k", 1
    )
    assert applied == expected
    batch = await any_store.apply_updates_from_event(
        event, ident.binding, ident.descriptor, [(scope, "k", 1), (scope, "k2", 2)]
    )
    assert batch == [expected, expected]
    for scope_name in ("conversation", "actor"):
        assert await any_store.state_list(ident.scope_key(scope_name)) == ([], False)
    # Reads do not raise either: a scope no write could reach reads as empty.
    snapshot = await any_store.build_snapshot_from_event(event, ident.binding, ident.descriptor)
    assert snapshot[scope] in ({}, {"external.conversation_id": event.conversation_id})


@pytest.mark.parametrize("kind", _TEXTLESS)
async def test_event_writes_refuse_a_binding_or_runner_id_without_text(
    any_store: StateStore, kind: str
) -> None:
    ident = new_identity()
    binding = ident.binding.model_copy(update={"binding_id": _textless(kind)})
    descriptor = ident.descriptor.model_copy(update={"id": _textless(kind)})
    assert await any_store.apply_update_from_event(
        ident.event, binding, ident.descriptor, "conversation", "k", 1
    ) == _refusal("binding_identity", kind)
    assert await any_store.apply_update_from_event(
        ident.event, ident.binding, descriptor, "conversation", "k", 1
    ) == _refusal("runner_id", kind)
    assert await any_store.state_list(ident.scope_key()) == ([], False)
