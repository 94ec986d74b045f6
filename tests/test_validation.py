"""The input rules of statekit.validation, property by property."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statekit import validation
from statekit.backends.base import OPTIONAL_CONTEXT_FIELDS
from statekit.json_chunks import json_chunks
from statekit.scope import VALID_STATE_SCOPES
from statekit.validation import (
    MAX_STATE_KEY_LENGTH,
    MAX_VALUE_JSON_BYTES,
    Refusal,
    check_context_mapping,
    check_expected_version,
    check_limit,
    check_owner,
    check_prefix,
    check_scope,
    check_scope_key,
    check_state_key,
    checked_context,
    context_text,
    decode_value,
    encode_value,
)


def _is_forbidden(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF


@given(st.text(max_size=300))
def test_key_rule_is_length_and_character_classes(key: str) -> None:
    valid = 0 < len(key) <= MAX_STATE_KEY_LENGTH and not any(map(_is_forbidden, key))
    if valid:
        assert check_state_key(key) == key
    else:
        with pytest.raises(Refusal):
            check_state_key(key)


@given(st.one_of(st.integers(), st.none(), st.binary(), st.lists(st.text())))
def test_non_string_keys_are_refused(key: Any) -> None:
    with pytest.raises(Refusal, match="must be a string"):
        check_state_key(key)


def test_empty_prefix_means_no_prefix() -> None:
    assert check_prefix(None) == ""
    assert check_prefix("") == ""
    with pytest.raises(Refusal):
        check_prefix("bad\x00")


@given(st.integers())
def test_limit_is_clamped_to_0_100(limit: int) -> None:
    assert check_limit(limit) == max(0, min(limit, 100))


@pytest.mark.parametrize("limit", [True, 1.5, "10", None])
def test_non_integer_limit_is_refused(limit: Any) -> None:
    with pytest.raises(Refusal):
        check_limit(limit)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children) | st.dictionaries(st.text(st.characters(codec="utf-8")), children)
    ),
    max_leaves=20,
)


@given(_json)
def test_encoded_value_is_compact_strict_json_that_round_trips(value: Any) -> None:
    text = encode_value(value)
    assert json.loads(text) == value
    assert text == json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class _Key(str):
    pass


@given(st.text(max_size=20) | st.just("x" * 513))
def test_a_scope_key_is_judged_the_same_on_every_call(text: str) -> None:
    # Accepted keys are remembered: the first and later calls, and a str subclass, agree.
    def outcome(key: str) -> tuple[str, Any]:
        try:
            return "key", check_scope_key(key)
        except Refusal as refusal:
            return refusal.reason, str(refusal)

    first = outcome(text)
    assert outcome(text) == first == outcome(_Key(text))
    valid = 0 < len(text) <= 512 and not any(_is_forbidden(char) for char in text)
    assert (first[0] == "key") == valid
    if valid:
        assert type(check_scope_key(_Key(text))) is _Key


def _decoded(decode: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", decode(text)
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, str(exc)


@given(
    _json.map(lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")))
    | _json.map(json.dumps).map(lambda t: f" {t}\n")
    | st.text(st.sampled_from('[]{}":,0123456789.eE-+ntrufals\ufeff \\x'), max_size=12)
)
def test_decoded_value_is_what_json_loads_gives_or_its_error(text: str) -> None:
    assert _decoded(decode_value, text) == _decoded(json.loads, text)


def test_decoding_a_value_nested_too_deep_raises_as_json_loads_does() -> None:
    with pytest.raises(RecursionError):
        decode_value("[" * 100_000)


_LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text()


@given(st.dictionaries(st.text() | st.integers(), _LEAF | st.lists(_LEAF, max_size=2)))
def test_the_flat_object_bound_is_the_general_walks(value: dict[Any, Any]) -> None:
    flat = validation._flat_bound(value)
    if flat is None:  # an int key or a big int, in a list or not: left to the general walk
        leaves = [w for v in value.values() for w in (v if isinstance(v, list) else [v])]
        assert any(type(k) is not str for k in value) or any(
            type(v) is int and abs(v) >= 2**64 for v in leaves
        )
        return
    walked = validation._scan([value], math.inf)  # wrapped: the walk takes the object
    assert walked == (flat + 2, None)


def test_an_object_with_a_list_past_the_limit_is_left_to_the_walk() -> None:
    # The list's length is counted before its items, so a long list is never walked here.
    value = {"tags": [""] * MAX_VALUE_JSON_BYTES}
    assert validation._flat_bound(value) is None
    assert validation._flat_bound({"tags": ["a", 1, None, [2]]}) is None
    assert validation._flat_bound({"tags": ["ab", 1, None]}) == 2 + 4 + 4 + 2
    with pytest.raises(Refusal, match=r"^Value size at least \d+ bytes exceeds limit"):
        encode_value(value)


@given(st.text(st.characters(codec="utf-8"), max_size=40))
def test_size_limit_is_on_utf8_bytes_of_the_stored_text(text: str) -> None:
    encoded = json.dumps(text, ensure_ascii=False)
    padding = MAX_VALUE_JSON_BYTES - len(encoded.encode("utf-8"))
    assert encode_value(text + "x" * padding)
    with pytest.raises(Refusal, match=r"^Value size \d+ bytes exceeds limit 262144 bytes$"):
        encode_value(text + "x" * (padding + 1))


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        [math.inf],
        {"a": -math.inf},
        {1, 2},
        b"x",
        object(),
        "\udfff",
        {2: "x"},
        {"a": {None: 1}},
        "huge-int",
    ],
)
def test_unencodable_values_are_refusals_not_exceptions(value: Any) -> None:
    if value == "huge-int":
        value = 10**5000  # built here: pytest cannot print it as a test id
    with pytest.raises(Refusal, match=r"^Value is not JSON-serializable: "):
        encode_value(value)


def test_deep_nesting_is_a_refusal() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(Refusal, match=r"^Value is not JSON-serializable: "):
        encode_value(deep)


# ---- the checks of a State API write, one rule each ----------------------------


@pytest.mark.parametrize("scope", VALID_STATE_SCOPES)
def test_the_four_scopes_are_valid(scope: str) -> None:
    assert check_scope(scope) == scope


@pytest.mark.parametrize("scope", ["global", "", "Actor", None, 3, ("actor",)])
def test_any_other_scope_is_refused_by_name(scope: Any) -> None:
    with pytest.raises(Refusal, match=rf"^Invalid scope: {re.escape(str(scope))}$"):
        check_scope(scope)


@pytest.mark.parametrize(("runner_id", "binding"), [(1, "b"), ("r", None), (b"r", "b")])
def test_owner_ids_must_be_text(runner_id: Any, binding: Any) -> None:
    with pytest.raises(Refusal, match=r"^runner_id and binding_identity must be strings$"):
        check_owner(runner_id, binding)
    assert check_owner("", "") == ("", "")  # any text, as the original store took it


@pytest.mark.parametrize("version", [None, 0, 1, 2**63 - 1])
def test_expected_version_is_none_or_a_signed_64_bit_count(version: int | None) -> None:
    assert check_expected_version(version) == version


@pytest.mark.parametrize("version", [-1, 2**63, True, False, 1.0, "1"])
def test_other_expected_versions_are_refused(version: Any) -> None:
    message = f"expected_version must be an integer from 0 to 2**63 - 1, not {version!r}"
    with pytest.raises(Refusal, match=f"^{re.escape(message)}$"):
        check_expected_version(version)


def test_context_mapping_gives_the_optional_fields_in_order() -> None:
    none = (None,) * len(OPTIONAL_CONTEXT_FIELDS)
    assert check_context_mapping(None) == check_context_mapping({}) == none
    given_fields = {name: f"v-{name}" for name in OPTIONAL_CONTEXT_FIELDS} | {"other": 1}
    assert check_context_mapping(given_fields) == tuple(
        f"v-{name}" for name in OPTIONAL_CONTEXT_FIELDS
    )
    assert check_context_mapping({"actor_id": "a"}) == tuple(
        "a" if name == "actor_id" else None for name in OPTIONAL_CONTEXT_FIELDS
    )


@pytest.mark.parametrize("context", [["bot_id"], "bot_id=x", 5])
def test_a_context_that_is_not_a_mapping_is_refused(context: Any) -> None:
    message = f"context must be a mapping, not {type(context).__name__}"
    with pytest.raises(Refusal, match=f"^{re.escape(message)}$"):
        check_context_mapping(context)


def test_checked_context_stores_non_text_ids_as_text_and_refuses_unstorable_ones() -> None:
    extra = (7, *(None,) * (len(OPTIONAL_CONTEXT_FIELDS) - 1))
    assert checked_context("r", "b", "actor", extra).as_dict()[OPTIONAL_CONTEXT_FIELDS[0]] == "7"
    # True == 1 as a cache key: the text stored must still differ.
    as_bool = (True, *extra[1:])
    assert (
        checked_context("r", "b", "actor", as_bool).as_dict()[OPTIONAL_CONTEXT_FIELDS[0]] == "True"
    )
    for bad in ("x" * 256, "a\x00b"):
        with pytest.raises(Refusal, match=f'^Context field "{OPTIONAL_CONTEXT_FIELDS[0]}"'):
            checked_context("r", "b", "actor", (bad, *extra[1:]))


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(max_size=2),
    st.sets(st.integers(), max_size=2),
)
_KEYS = st.one_of(
    st.text(max_size=3), st.integers(), st.floats(), st.booleans(), st.none(), st.tuples()
)
_ANY_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=30,
)


def _outcome(encode: Any, value: Any) -> tuple[str, str]:
    try:
        return "text", encode(value)
    except (TypeError, ValueError) as exc:
        return type(exc).__name__, str(exc)


@given(_ANY_VALUES)
def test_json_chunks_make_the_text_and_errors_of_the_json_module(value: Any) -> None:
    # The chunked encoder large values go through must store what a small value's gets.
    reference = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert _outcome(lambda v: "".join(json_chunks(v)), value) == _outcome(reference.encode, value)


def test_json_chunks_refuse_cycles_and_accept_shared_references() -> None:
    loop: list[Any] = []
    loop.append({"again": loop})
    with pytest.raises(ValueError, match=r"^Circular reference detected$"):
        "".join(json_chunks(loop))
    shared = [1]
    assert "".join(json_chunks([shared, {"a": shared}])) == '[[1],{"a":[1]}]'


def test_json_chunks_need_no_stack_for_depth() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert sum(map(len, json_chunks(deep))) == 200_002


class _Overstated(str):
    def __len__(self) -> int:
        return 10**9


def test_a_value_the_scan_overstates_is_still_stored_and_checked_whole() -> None:
    # A str subclass may lie about its length: the value then takes the chunked path,
    # which must still give the text, and the structure rules must still apply.
    assert encode_value([_Overstated("abc"), 1]) == '["abc",1]'
    with pytest.raises(Refusal, match="object keys must be strings, not int"):
        encode_value([_Overstated("abc"), {1: 2}])


class _RaisingStr:
    def __str__(self) -> str:
        raise LookupError("no text")


def test_context_text_is_the_value_s_text_or_a_refusal_naming_the_field() -> None:
    assert context_text("bot_id", None) is None
    assert context_text("bot_id", "b") == "b"
    assert context_text("bot_id", 7) == "7"
    assert context_text("bot_id", True) == "True"
    for value, kind in ((10**5000, "int"), (_RaisingStr(), "_RaisingStr")):
        message = f'Context field "bot_id" has no storable text ({kind} value)'
        with pytest.raises(Refusal, match=f"^{re.escape(message)}$"):
            context_text("bot_id", value)
        extra = (value, *(None,) * (len(OPTIONAL_CONTEXT_FIELDS) - 1))
        with pytest.raises(Refusal, match=f"^{re.escape(message)}$"):
            checked_context("r", "b", "actor", extra)
