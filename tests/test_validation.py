"""The input rules of statekit.validation, property by property."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from statekit.validation import (
    MAX_STATE_KEY_LENGTH,
    MAX_VALUE_JSON_BYTES,
    Refusal,
    check_limit,
    check_prefix,
    check_state_key,
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
