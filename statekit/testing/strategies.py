"""Hypothesis strategies shared by the contract suite's property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Hypothesis examples each do real I/O: keep them few, without deadlines. Every example
# uses a fresh identity, so the function-scoped backend fixture is safe to share; the
# same test runs on one subclass per backend, hence "differing executors".
io_examples = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.differing_executors,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
#: Any strict JSON value (small), as the store must accept and return it.
json_values: st.SearchStrategy[Any] = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Keys drawn from a tiny alphabet share prefixes often, including the wildcard characters.
prefix_alphabet = st.sampled_from(list("ab_%*?[]\\é😀"))
#: Short keys over a tiny alphabet: listings and prefixes overlap often.
listing_keys = st.text(prefix_alphabet, min_size=1, max_size=4)
