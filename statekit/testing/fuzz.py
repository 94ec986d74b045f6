"""Bad input, everywhere: random calls of every public ``StateStore`` method against a model.

Each example draws a sequence of calls with valid and hostile arguments (empty, overlong,
control-character and lone-surrogate keys, non-``str`` keys, prefixes and cursors,
non-``int`` limits, NaN, bytes, sets, 300 KB strings, 2000-deep lists, huge ints, values
with non-string object keys, malformed batch updates). Every call must either succeed or
give the documented refusal, and never raise: the only exception allowed is
:class:`~statekit.errors.UnsupportedCapabilityError` for a version call on a backend
without :attr:`~statekit.Capability.VERSIONS`. A :class:`~statekit.errors.StateBackendError`
counts as a failure too: it means the backend choked on input the store accepted.
Afterwards the store must hold exactly what a plain dict saw of the accepted writes.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statekit.backends.base import Capability, StateBackend
from statekit.errors import UnsupportedCapabilityError
from statekit.scope import VALID_STATE_SCOPES, build_state_scope_key
from statekit.store import StateStore, StateUpdate
from statekit.testing.identities import Identity, new_identity
from statekit.testing.strategies import io_examples, json_values
from statekit.validation import (
    MAX_LIST_LIMIT,
    MAX_STATE_KEY_LENGTH,
    MAX_VALUE_DEPTH,
    MAX_VALUE_JSON_BYTES,
)

VALID, INVALID, EITHER = "valid", "invalid", "either"
_VALUE_REFUSAL = re.compile(
    r"Value is not JSON-serializable: .+|"
    rf"Value size \d+ bytes exceeds limit {MAX_VALUE_JSON_BYTES} bytes",
    re.DOTALL,
)


def _nested(depth: int, leaf: Any = 0, as_dict: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append({"again": loop})
    return loop


# (value, whether the store must accept it): EITHER where the interpreter decides, e.g.
# the digit limit for int-to-str conversion.
_HOSTILE_VALUES: list[tuple[Any, str]] = [
    (math.nan, INVALID),
    (math.inf, INVALID),
    ([-math.inf], INVALID),
    (b"bytes", INVALID),
    ({1, 2}, INVALID),
    ({1: "int key"}, INVALID),
    ({"ok": {None: 1}}, INVALID),
    ({(1, 2): "tuple key"}, INVALID),
    ({True: "bool key"}, INVALID),
    ("lone \ud800 surrogate", INVALID),
    ({"\udc00": "surrogate key"}, INVALID),
    (object(), INVALID),
    (_circular(), INVALID),
    ("x" * 300_000, INVALID),
    (["é" * (MAX_VALUE_JSON_BYTES // 2)], INVALID),
    ("x" * (MAX_VALUE_JSON_BYTES - 2), VALID),
    (_nested(2000), INVALID),
    (_nested(2000, as_dict=True), INVALID),
    (_nested(MAX_VALUE_DEPTH + 1), INVALID),
    (_nested(MAX_VALUE_DEPTH, as_dict=True), VALID),
    (_nested(MAX_VALUE_DEPTH - 1, leaf=[]), VALID),
    (10**5000, EITHER),
    (10**4000, EITHER),
    (-(10**100), VALID),
    (2**64, VALID),
    (-0.0, VALID),
    (5e-324, VALID),
    (1.7976931348623157e308, VALID),
    ((1, "tuple", None), VALID),
    ({"\u2028": "\x00\x1f\x7f"}, VALID),
    ("😀\U0010ffff", VALID),
    ({"": {"": [{}]}}, VALID),
]
values = st.sampled_from(_HOSTILE_VALUES) | json_values.map(lambda v: (v, VALID))

_BAD_KEYS: list[Any] = [
    "",
    "k" * (MAX_STATE_KEY_LENGTH + 1),
    "nul\x00",
    "new\nline",
    "\x1f",
    "del\x7f",
    "c1\x9f",
    "lone\ud800",
    "\udfff",
    0,
    None,
    b"a",
    ["a"],
    ("a",),
    1.5,
    True,
]
_GOOD_KEYS = ["a", "ab", "a%", "a_", "A", "b", "é", "😀", "conversation_id", "k" * 255]
keys = (
    st.sampled_from(_GOOD_KEYS)
    | st.sampled_from(_BAD_KEYS)
    | st.text(max_size=4)
    | st.text(st.sampled_from(list("ab_%")), min_size=1, max_size=3)
)
prefixes = st.none() | keys
_LIMITS: list[Any] = [0, 1, 2, 3, 100, 101, -1, -(10**30), 10**30, None, "5", 2.0, True, [1], b"1"]
limits = st.sampled_from(_LIMITS)
_SCOPES: list[Any] = [*VALID_STATE_SCOPES, "global", "Conversation", "", None, 5, ["actor"]]
scopes = st.sampled_from(_SCOPES)
_EXPECTED_VERSIONS: list[Any] = [0, 1, 2, 3, -1, 2**63 - 1, 2**63, 2**70, True, "1", 1.0]
expected_versions = st.none() | st.sampled_from(_EXPECTED_VERSIONS)
_CONTEXTS: list[Any] = [
    None,
    {},
    {"bot_id": "b", "thread_id": 5},
    {"unknown": 1, "actor_id": "é"},
    ["x"],
    "ctx",
    5,
]
contexts = st.sampled_from(_CONTEXTS)
_RUNNER_IDS: list[Any] = ["runner", 5, None, b"runner"]
runner_ids = st.sampled_from(["runner", "runner", *_RUNNER_IDS])

# Scope keys for the State API: indexes into the example's valid keys, or a bad one.
_BAD_SCOPE_KEYS: list[Any] = ["", None, 7, b"sk", "sk\x00", "sk\ud800", "s" * 513, ["sk"]]
_N_VALID_TARGETS = len(VALID_STATE_SCOPES) + 1
_valid_targets = st.integers(0, _N_VALID_TARGETS - 1)
# Mostly valid scope keys, so that most calls reach the backend and the model matters.
targets = st.one_of(
    _valid_targets,
    _valid_targets,
    st.sampled_from([-i for i in range(1, len(_BAD_SCOPE_KEYS) + 1)]),
)


@dataclass(frozen=True)
class Get:
    target: int
    key: Any


@dataclass(frozen=True)
class GetVersioned:
    target: int
    key: Any


@dataclass(frozen=True)
class Set:
    target: int
    key: Any
    value: tuple[Any, str]
    scope: Any = "conversation"
    expected_version: Any = None
    runner_id: Any = "runner"
    context: Any = None


@dataclass(frozen=True)
class Delete:
    target: int
    key: Any


@dataclass(frozen=True)
class List:
    target: int
    prefix: Any = None
    limit: Any = 100
    after: Any = None


@dataclass(frozen=True)
class Apply:
    scope: Any
    key: Any
    value: tuple[Any, str]


@dataclass(frozen=True)
class ApplyMany:
    updates: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    pass


_MALFORMED_UPDATES: list[tuple[str, Any, str]] = [
    ("bad", 5, VALID),
    ("bad", ("conversation", "k"), VALID),
    ("bad", ("conversation", "k", 1, 2), VALID),
    ("bad", None, VALID),
    ("mapping", {"scope": "conversation", "value": 1}, VALID),
    ("mapping", {"key": "k"}, VALID),
    ("mapping", {}, VALID),
    ("tuple", "abc", VALID),
]
_update = st.one_of(
    st.builds(lambda s, k, v: ("tuple", (s, k, v[0]), v[1]), scopes, keys, values),
    st.builds(lambda s, k, v: ("update", StateUpdate(s, k, v[0]), v[1]), scopes, keys, values),
    st.builds(
        lambda s, k, v: ("mapping", {"scope": s, "key": k, "value": v[0]}, v[1]),
        scopes,
        keys,
        values,
    ),
    st.sampled_from(_MALFORMED_UPDATES),
)
operations = st.one_of(
    st.builds(Get, targets, keys),
    st.builds(GetVersioned, targets, keys),
    st.builds(Set, targets, keys, values, scopes, expected_versions, runner_ids, contexts),
    st.builds(Set, targets, keys, values),
    st.builds(Delete, targets, keys),
    st.builds(List, targets, prefixes, limits, prefixes),
    st.builds(Apply, scopes, keys, values),
    st.builds(ApplyMany, st.lists(_update, max_size=5)),
    st.just(Snapshot()),
)


def key_ok(key: Any) -> bool:
    """The key rules of DESIGN.md, written out independently of ``statekit.validation``."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_STATE_KEY_LENGTH
        and not any(
            ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in key
        )
    )


def stored_key(key: Any) -> str | None:
    """The key as stored after the alias, or ``None`` if the rules refuse it."""
    if isinstance(key, str) and key == "conversation_id":
        key = "external.conversation_id"
    return key if key_ok(key) else None


def _canonical(value: Any) -> str:
    """Equal decoded JSON values have equal canonical text; ``1`` and ``1.0`` do not."""
    return json.dumps(value, sort_keys=True)


class _Model:
    """What the store must hold: ``{scope_key: {state_key: (json_text, version)}}``."""

    def __init__(self, ident: Identity, scopes: tuple[str, ...], versioned: bool) -> None:
        self.ident = ident
        self.enabled = scopes
        self.versioned = versioned
        self.scope_keys: dict[str, str] = {}
        for scope in VALID_STATE_SCOPES:
            key = build_state_scope_key(scope, ident.event, ident.binding, ident.descriptor)
            if key is not None:
                self.scope_keys[scope] = key
        self.targets = [
            *(
                self.scope_keys.get(s, f"missing-{s}-{uuid.uuid4().hex}")
                for s in VALID_STATE_SCOPES
            ),
            f"fuzz:{uuid.uuid4().hex}:é",
        ]
        self.data: dict[str, dict[str, tuple[str, int]]] = {k: {} for k in self.targets}

    def target(self, index: int) -> Any:
        return self.targets[index] if index >= 0 else _BAD_SCOPE_KEYS[-index - 1]

    def write(self, scope_key: str, key: str, value: Any) -> None:
        version = self.data[scope_key].get(key, ("", 0))[1] + 1
        self.data[scope_key][key] = (_canonical(json.loads(json.dumps(value))), version)

    def known(self, scope_key: Any) -> bool:
        return isinstance(scope_key, str) and scope_key in self.data

    def value(self, scope_key: Any, key: Any) -> str | None:
        stored = stored_key(key)
        if not self.known(scope_key) or stored is None:
            return None
        entry = self.data[scope_key].get(stored)
        return None if entry is None else entry[0]

    def version(self, scope_key: Any, key: Any) -> int:
        stored = stored_key(key)
        if not self.known(scope_key) or stored is None:
            return 0
        return self.data[scope_key].get(stored, ("", 0))[1]


Result = tuple[bool, str | None]
_KEY_REFUSAL = re.compile(r"State key .+", re.DOTALL)
_SCOPE_KEY_REFUSAL = re.compile(r"Scope key must be .+", re.DOTALL)


def _exactly(message: str) -> re.Pattern[str]:
    return re.compile(re.escape(message), re.DOTALL)


def _check_outcome(result: Result, reasons: list[re.Pattern[str]], kind: str) -> bool:
    """Check ``result`` against the model's prediction; ``True`` if the call was refused.

    ``reasons`` holds every rule the call's arguments break, each found on its own (a value
    of kind INVALID adds the value rule): the store may report any one of them, in whatever
    order it checks. With no reason the call must succeed, except that a value of kind
    EITHER may be refused as a value.
    """
    ok, message = result
    if kind == INVALID:
        reasons = [*reasons, _VALUE_REFUSAL]
    if reasons:
        assert ok is False, f"accepted despite {[r.pattern for r in reasons]}"
        assert message is not None
        assert any(r.fullmatch(message) for r in reasons), (
            f"{message!r} is none of the refusals {[r.pattern for r in reasons]}"
        )
        return True
    if not ok and kind == EITHER:
        assert message is not None
        assert _VALUE_REFUSAL.fullmatch(message), message
        return True
    return False


def _event_refusals(model: _Model, scope: Any, key: Any) -> list[re.Pattern[str]]:
    """What ``apply_update_from_event`` may refuse ``(scope, key)`` for, one rule at a time."""
    reasons = []
    if scope not in VALID_STATE_SCOPES:
        reasons.append(_exactly(f"Invalid scope: {scope}"))
    if scope not in model.enabled:
        reasons.append(_exactly(f'Scope "{scope}" not enabled by binding policy'))
    if stored_key(key) is None:
        reasons.append(_KEY_REFUSAL)
    if scope in VALID_STATE_SCOPES and scope not in model.scope_keys:
        reasons.append(_exactly(f'Missing identity for scope "{scope}"'))
    return reasons


def _version_ok(expected_version: Any) -> bool:
    return expected_version is None or (
        type(expected_version) is int and 0 <= expected_version < 2**63
    )


def _set_refusals(model: _Model, op: Set) -> list[re.Pattern[str]]:
    """What ``state_set`` may refuse ``op`` for (apart from its value), one rule at a time."""
    reasons = []
    if not model.known(model.target(op.target)):
        reasons.append(_SCOPE_KEY_REFUSAL)
    if stored_key(op.key) is None:
        reasons.append(_KEY_REFUSAL)
    if op.scope not in VALID_STATE_SCOPES:
        reasons.append(_exactly(f"Invalid scope: {op.scope}"))
    if not isinstance(op.runner_id, str):
        reasons.append(_exactly("runner_id and binding_identity must be strings"))
    if not _version_ok(op.expected_version):
        reasons.append(
            _exactly(
                "expected_version must be an integer from 0 to 2**63 - 1, "
                f"not {op.expected_version!r}"
            )
        )
    if op.context is not None and not isinstance(op.context, Mapping):
        reasons.append(_exactly(f"context must be a mapping, not {type(op.context).__name__}"))
    return reasons


class FuzzContract:
    """Mixin of :class:`~statekit.testing.StateBackendContract`: hostile input never raises,
    never writes, and never makes the store diverge from a model of the accepted writes."""

    @given(
        ops=st.lists(operations, min_size=3, max_size=30),
        enabled=st.sets(st.sampled_from(VALID_STATE_SCOPES)),
        has_subject=st.booleans(),
    )
    @io_examples
    async def test_hostile_calls_refuse_cleanly_and_match_a_model(
        self,
        store: StateStore,
        backend: StateBackend,
        ops: list[Any],
        enabled: set[str],
        has_subject: bool,
    ) -> None:
        scopes = tuple(s for s in VALID_STATE_SCOPES if s in enabled)
        ident = new_identity(scopes) if has_subject else new_identity(scopes, subject_id=None)
        model = _Model(ident, scopes, Capability.VERSIONS in backend.capabilities)
        try:
            for op in ops:
                await _run(store, model, op)
            await _check_contents(store, model)
        finally:
            await _forget(store, model)

    @pytest.mark.parametrize("has_subject", [True, False])
    async def test_every_hostile_argument_refuses_cleanly(
        self, store: StateStore, backend: StateBackend, has_subject: bool
    ) -> None:
        """Each hostile argument of every method at least once, the others valid: random
        draws alone would reach some of them only rarely."""
        scopes = ("conversation", "actor", "runner")
        ident = new_identity(scopes) if has_subject else new_identity(scopes, subject_id=None)
        model = _Model(ident, scopes, Capability.VERSIONS in backend.capabilities)
        try:
            for op in hostile_sweep():
                await _run(store, model, op)
            await _check_contents(store, model)
        finally:
            await _forget(store, model)


async def _forget(store: StateStore, model: _Model) -> None:
    """Delete what the example wrote, so a shared backend does not grow across examples."""
    for scope_key in model.targets:
        for key in list(model.data[scope_key]):
            await store.state_delete(scope_key, key)


def hostile_sweep() -> list[Any]:
    """Calls that vary one argument over every hostile choice, interleaved with valid writes
    so that refusals are checked against stored data."""
    good: tuple[Any, str] = ({"n": 1}, VALID)
    bad_targets = [-i for i in range(1, len(_BAD_SCOPE_KEYS) + 1)]
    ops: list[Any] = [Set(t, k, good) for t in range(_N_VALID_TARGETS) for k in _GOOD_KEYS]
    for target in [*range(_N_VALID_TARGETS), *bad_targets]:
        ops += [Get(target, "a"), GetVersioned(target, "a"), List(target), Delete(target, "b")]
        ops += [Set(target, "a", good), Set(target, "a", good, expected_version=1)]
    for key in [*_BAD_KEYS, *_GOOD_KEYS]:
        ops += [Get(0, key), GetVersioned(0, key), Set(0, key, good), Apply("actor", key, good)]
        ops += [List(0, prefix=key), List(0, after=key), List(1, prefix=key, after=key)]
        ops += [Delete(0, key), ApplyMany([("tuple", ("conversation", key, 1), VALID)])]
    for limit in _LIMITS:
        ops += [List(0, limit=limit), List(0, prefix="a", limit=limit, after="a")]
    for value in _HOSTILE_VALUES:
        ops += [Set(1, "v", value), Apply("conversation", "v", value), Get(1, "v")]
        ops += [ApplyMany([("update", StateUpdate("runner", "v", value[0]), value[1])])]
    ops += [Set(0, "e", good, expected_version=v) for v in _EXPECTED_VERSIONS]
    ops += [Set(0, "c", good, context=c) for c in _CONTEXTS]
    ops += [Set(0, "r", good, runner_id=r) for r in _RUNNER_IDS]
    ops += [Set(0, "s", good, scope=scope) for scope in _SCOPES]
    ops += [Apply(scope, "s", good) for scope in _SCOPES]
    ops += [ApplyMany([u, ("tuple", ("runner", "m", 1), VALID)]) for u in _MALFORMED_UPDATES]
    ops += [Snapshot(), *(Delete(t, k) for t in range(_N_VALID_TARGETS) for k in _GOOD_KEYS)]
    return [*ops, Snapshot()]


async def _run(store: StateStore, model: _Model, op: Any) -> None:
    if isinstance(op, Get):
        value = await store.state_get(model.target(op.target), op.key)
        expected = model.value(model.target(op.target), op.key)
        assert (None if value is None else _canonical(value)) == (
            None if expected is None or expected == "null" else expected
        )
    elif isinstance(op, GetVersioned):
        if not model.versioned:
            await _check_unversioned_read(store, model, op)
            return
        value, version = await store.state_get_versioned(model.target(op.target), op.key)
        expected = model.value(model.target(op.target), op.key)
        assert (None if value is None else _canonical(value)) == (
            None if expected == "null" else expected
        )
        assert version == model.version(model.target(op.target), op.key)
    elif isinstance(op, Set):
        await _run_set(store, model, op)
    elif isinstance(op, Delete):
        scope_key = model.target(op.target)
        existed = model.value(scope_key, op.key) is not None
        assert await store.state_delete(scope_key, op.key) is existed
        if existed:
            del model.data[scope_key][str(stored_key(op.key))]
    elif isinstance(op, List):
        await _run_list(store, model, op)
    elif isinstance(op, Apply):
        result = await store.apply_update_from_event(
            model.ident.event,
            model.ident.binding,
            model.ident.descriptor,
            op.scope,
            op.key,
            op.value[0],
        )
        if not _check_outcome(result, _event_refusals(model, op.scope, op.key), op.value[1]):
            assert result == (True, None)
            model.write(model.scope_keys[op.scope], str(stored_key(op.key)), op.value[0])
    elif isinstance(op, ApplyMany):
        await _run_apply_many(store, model, op)
    else:
        snapshot = await store.build_snapshot_from_event(
            model.ident.event, model.ident.binding, model.ident.descriptor
        )
        expected_snapshot: dict[str, dict[str, str]] = {}
        for scope in VALID_STATE_SCOPES:
            entries = model.data.get(model.scope_keys.get(scope, ""), {})
            enabled = scope in model.enabled
            expected_snapshot[scope] = {k: v for k, (v, _) in entries.items()} if enabled else {}
        if "conversation" in model.enabled:
            conversation_id = _canonical(model.ident.event.conversation_id)
            expected_snapshot["conversation"].setdefault(
                "external.conversation_id", conversation_id
            )
        assert {s: {k: _canonical(v) for k, v in d.items()} for s, d in snapshot.items()} == (
            expected_snapshot
        )


async def _check_unversioned_read(store: StateStore, model: _Model, op: GetVersioned) -> None:
    """Without versions the read raises; bad arguments may give the empty answer instead."""
    scope_key = model.target(op.target)
    try:
        answer = await store.state_get_versioned(scope_key, op.key)
    except UnsupportedCapabilityError:
        return
    assert not model.known(scope_key) or stored_key(op.key) is None, "versions without VERSIONS"
    assert answer == (None, 0)


async def _run_set(store: StateStore, model: _Model, op: Set) -> None:
    """Refused (for one of the reasons its arguments give), a version conflict, or written."""
    scope_key = model.target(op.target)
    args = (scope_key, op.key, op.value[0], op.runner_id, "binding", op.scope, op.context)
    ev = op.expected_version
    reasons = _set_refusals(model, op)
    if ev is not None and not model.versioned:
        try:
            result = await store.state_set(*args, expected_version=ev)
        except UnsupportedCapabilityError:
            return
        # A store may refuse bad arguments before it looks at the capability; never write.
        assert _check_outcome(result, reasons, op.value[1]), "a version call was accepted"
        return
    result = await store.state_set(*args, expected_version=ev)
    if _check_outcome(result, reasons, op.value[1]):
        return
    key = str(stored_key(op.key))
    actual = model.version(scope_key, key)
    if ev is not None and ev != actual:
        expected = f"Version conflict on {key!r}: expected version {ev}, found {actual}"
        assert result == (False, expected)
        return
    assert result == (True, None)
    model.write(scope_key, key, op.value[0])


async def _run_list(store: StateStore, model: _Model, op: List) -> None:
    scope_key = model.target(op.target)
    result = await store.state_list(scope_key, op.prefix, op.limit, op.after)
    prefix = "" if op.prefix is None or op.prefix == "" else stored_key(op.prefix)
    valid = (
        model.known(scope_key)
        and prefix is not None
        and isinstance(op.limit, int)
        and not isinstance(op.limit, bool)
        and (op.after is None or key_ok(op.after))
    )
    if not valid:
        assert result == ([], False)
        return
    after = op.after
    matching = sorted(
        k
        for k in model.data[scope_key]
        if k.startswith(str(prefix)) and (after is None or k > after)
    )
    page = max(0, min(op.limit, MAX_LIST_LIMIT))
    assert result == (matching[:page], len(matching) > page)


async def _run_apply_many(store: StateStore, model: _Model, op: ApplyMany) -> None:
    results = await store.apply_updates_from_event(
        model.ident.event, model.ident.binding, model.ident.descriptor, [u[1] for u in op.updates]
    )
    assert len(results) == len(op.updates)
    for (form, update, kind), result in zip(op.updates, results, strict=True):
        if form == "bad":
            shape = "Update must be a StateUpdate, a (scope, key, value) tuple or a mapping"
            assert _check_outcome(result, [_exactly(shape)], kind)
            continue
        if form == "mapping":
            missing = [f for f in ("scope", "key", "value") if f not in update]
            if missing:
                reasons = [_exactly(f"Update is missing {f!r}") for f in missing]
                assert _check_outcome(result, reasons, kind)
                continue
            scope, key, value = update["scope"], update["key"], update["value"]
        elif form == "update":
            scope, key, value = update.scope, update.key, update.value
        else:
            scope, key, value = update
        if not _check_outcome(result, _event_refusals(model, scope, key), kind):
            assert result == (True, None)
            model.write(model.scope_keys[scope], str(stored_key(key)), value)


async def _check_contents(store: StateStore, model: _Model) -> None:
    exported = {
        (e.scope_key, e.state_key): (_canonical(json.loads(e.value_json)), e.version)
        async for e in store.export()
        if e.scope_key in model.data
    }
    expected = {
        (scope_key, key): (text, version if model.versioned else 0)
        for scope_key, entries in model.data.items()
        for key, (text, version) in entries.items()
    }
    if not model.versioned:
        exported = {k: (text, 0) for k, (text, _) in exported.items()}
    assert exported == expected
    for scope_key, entries in model.data.items():
        listed: list[str] = []
        after: str | None = None
        while True:
            page, has_more = await store.state_list(scope_key, after=after)
            listed.extend(page)
            if not has_more:
                break
            after = page[-1]
        assert listed == sorted(entries)
        for key, (text, _) in entries.items():
            assert _canonical(await store.state_get(scope_key, key)) == text
