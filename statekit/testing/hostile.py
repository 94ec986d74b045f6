"""Hostile arguments for every public ``StateStore`` method, and calls built from them.

Each value carries whether the store must accept it (``VALID``), refuse it (``INVALID``)
or may do either (``EITHER``, where the interpreter decides, e.g. the digit limit for
int-to-str conversion). :data:`operations` draws random calls for hypothesis;
:func:`hostile_sweep` lists every hostile argument of every method at least once.
Targets are indexes: ``0..N_VALID_TARGETS - 1`` name a valid scope key of the example
(one per scope, then a foreign one), ``-i`` the i-th of :data:`BAD_SCOPE_KEYS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from statekit.scope import VALID_STATE_SCOPES
from statekit.store import StateUpdate
from statekit.testing.strategies import json_values
from statekit.validation import MAX_STATE_KEY_LENGTH, MAX_VALUE_DEPTH, MAX_VALUE_JSON_BYTES

VALID, INVALID, EITHER = "valid", "invalid", "either"


def _nested(depth: int, leaf: Any = 0, as_dict: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append({"again": loop})
    return loop


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
BAD_SCOPE_KEYS: list[Any] = ["", None, 7, b"sk", "sk\x00", "sk\ud800", "s" * 513, ["sk"]]
N_VALID_TARGETS = len(VALID_STATE_SCOPES) + 1
_valid_targets = st.integers(0, N_VALID_TARGETS - 1)
# Mostly valid scope keys, so that most calls reach the backend and the model matters.
targets = st.one_of(
    _valid_targets,
    _valid_targets,
    st.sampled_from([-i for i in range(1, len(BAD_SCOPE_KEYS) + 1)]),
)


@dataclass(frozen=True)
class KeyCall:
    """A call on one key of one scope: ``target`` indexes the example's scope keys (a
    negative one is a bad scope key)."""

    target: int
    key: Any


class Get(KeyCall):
    """``state_get``."""


class GetVersioned(KeyCall):
    """``state_get_versioned``."""


@dataclass(frozen=True)
class Set:
    target: int
    key: Any
    value: tuple[Any, str]
    scope: Any = "conversation"
    expected_version: Any = None
    runner_id: Any = "runner"
    context: Any = None


class Delete(KeyCall):
    """``state_delete``."""


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


def hostile_sweep() -> list[Any]:
    """Calls that vary one argument over every hostile choice, interleaved with valid writes
    so that refusals are checked against stored data."""
    good: tuple[Any, str] = ({"n": 1}, VALID)
    bad_targets = [-i for i in range(1, len(BAD_SCOPE_KEYS) + 1)]
    ops: list[Any] = [Set(t, k, good) for t in range(N_VALID_TARGETS) for k in _GOOD_KEYS]
    for target in [*range(N_VALID_TARGETS), *bad_targets]:
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
    ops += [Snapshot(), *(Delete(t, k) for t in range(N_VALID_TARGETS) for k in _GOOD_KEYS)]
    return [*ops, Snapshot()]
