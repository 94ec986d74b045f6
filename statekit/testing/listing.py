"""Listing: code-point order, literal prefixes, the limit, ``has_more`` and the cursor."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from statekit.store import StateStore
from statekit.testing.identities import Identity, new_identity, put, put_many
from statekit.testing.strategies import io_examples, listing_keys, prefix_alphabet


class ListingContract:
    """Mixin of :class:`~statekit.testing.StateBackendContract`: ``state_list`` answers."""

    async def test_prefix_is_matched_literally(self, store: StateStore, ident: Identity) -> None:
        keys = ["a_b", "axb", "a%c", "abc", "*x", "xx", "?y", "[z]", "z", "a\\b", "ab", "]"]
        for key in keys:
            await put(store, ident, key, 1)
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
            await put(store, ident, key, 1)
        listed, has_more = await store.state_list(ident.scope_key())
        assert listed == sorted(keys)
        assert has_more is False

    @given(
        keys=st.sets(listing_keys, max_size=12),
        prefix=st.text(prefix_alphabet, max_size=2),
        limit=st.integers(-1, 5),
    )
    @io_examples
    async def test_listing_matches_a_sorted_filter(
        self, store: StateStore, keys: set[str], prefix: str, limit: int
    ) -> None:
        ident = new_identity()
        for key in keys:
            await put(store, ident, key, 1)
        expected = sorted(k for k in keys if k.startswith(prefix))
        page = max(0, limit)
        assert await store.state_list(ident.scope_key(), prefix=prefix, limit=limit) == (
            expected[:page],
            len(expected) > page,
        )

    async def test_limit_is_capped_at_100_with_exact_has_more(
        self, store: StateStore, ident: Identity
    ) -> None:
        await put_many(store, ident, {f"k{i:03d}": i for i in range(101)})
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
        await put_many(store, ident, {k: {"n": k} for k in expected})
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
            await put(store, ident, key, 1)
        assert await store.state_list(ident.scope_key(), after="bb") == (["c", "d"], False)
        assert await store.state_list(ident.scope_key(), after="d") == ([], False)
        assert await store.state_list(ident.scope_key(), prefix="c", after="a") == (["c"], False)
