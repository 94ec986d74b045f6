"""What is specific to erasure on Redis: the identity index sets, the order in which a new
scope is written (claim, index, create), stale index entries, and what a search costs.

The behaviour every backend shares is :class:`statekit.testing.ErasureContract`'s, run in
``test_contract_redis.py`` on fakeredis, Redis (both modes), a cluster and a Sentinel.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import fakeredis
import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from redis_expiry_support import SHORT, raw, sleep_past
from redis_servers import RedisServer, private_prefix, shared_backend

from statekit import StateStore
from statekit.backends.base import StateWrite
from statekit.backends.identity import IdentityFilter
from statekit.backends.redis import RedisBackend, glob_escape
from statekit.backends.redis.entries import context_json, stored_context, text
from statekit.backends.redis.identity import index_keys, index_member, parse_member
from statekit.backends.redis.scripts import CLAIM_MS, SCRIPTS, WRITE_SHA
from statekit.testing.erasure_places import Place, base_fields, found, new_tag

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture(params=["fakeredis", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[RedisBackend]:
    if request.param == "redis":
        async with shared_backend("er") as shared:
            yield shared
        return
    client = fakeredis.FakeAsyncRedis()
    fake = RedisBackend(client, key_prefix=private_prefix("er"))
    yield fake
    await fake.aclose()
    await client.aclose()


def actor(tag: str, actor_id: str = "u-1", **fields: str) -> Place:
    return Place.of("actor", {**base_fields(tag), "actor_id": actor_id, **fields})


async def keys_of(backend: RedisBackend) -> set[str]:
    """Every key under the backend's prefix."""
    pattern = glob_escape(backend.key_prefix) + "*"
    return {text(key) for key in await raw(backend, "KEYS", pattern)}


def scope_keys(backend: RedisBackend, place: Place) -> set[str]:
    return set(backend._keys(place.key))


async def claim_only(backend: RedisBackend, place: Place) -> str:
    """The first step of a new scope's write and nothing more (a client that stopped
    there): the script's refusal, and the context it stored."""
    value_key, meta_key, ctx_key, idx_key = backend._keys(place.key)
    reply = await raw(
        backend,
        *("EVAL", SCRIPTS[WRITE_SHA], 4, value_key, meta_key, ctx_key, idx_key),
        *("", "k", "1", context_json(place.context)),
    )
    assert int(reply[0]) == -2
    assert int(reply[1]) == 0  # the first (only) write of the batch
    return text(reply[2])


async def deadline(backend: RedisBackend, place: Place) -> datetime:
    at = await backend.scope_deadline(place.key)
    assert at is not None
    return at


async def assert_indexed(backend: RedisBackend, place: Place) -> None:
    """If the scope exists, every identity set of its stored context names it with the
    context's token."""
    value_key, _, ctx_key, _ = backend._keys(place.key)
    if not await raw(backend, "EXISTS", value_key):
        return
    token, context = stored_context(await raw(backend, "GET", ctx_key))
    assert token is not None, "a scope without a token: never indexed"
    member = index_member(place.key, token)
    for key in index_keys(backend.key_prefix, context):
        assert await raw(backend, "ZSCORE", key, member) is not None, (key, member)


# ---- the order of a new scope's write ---------------------------------------------


async def test_a_new_scope_is_created_only_after_its_index_entries(
    backend: RedisBackend,
) -> None:
    """The first script only claims the scope (its context, with a token and a grace
    lifetime) and writes nothing else; the write that follows indexes it with that
    token, then creates it."""
    place = actor(new_tag())
    stored = await claim_only(backend, place)
    token, context = stored_context(stored)
    assert token is not None
    assert token.isdigit()
    assert context == place.context
    ctx_key = backend._keys(place.key)[2]
    assert await keys_of(backend) == {ctx_key}
    assert 0 < int(await raw(backend, "PTTL", ctx_key)) <= CLAIM_MS
    assert await found(backend, IdentityFilter({"actor_id": "u-1"})) == {}

    assert await backend.set(StateWrite(place.key, "k", "2", place.context)) == 1
    identity_sets = set(index_keys(backend.key_prefix, place.context))
    assert len(identity_sets) == 6
    assert await keys_of(backend) == scope_keys(backend, place) | identity_sets
    assert int(await raw(backend, "PTTL", ctx_key)) == -1
    await assert_indexed(backend, place)
    assert stored_context(await raw(backend, "GET", ctx_key))[0] == token


async def test_a_client_stopped_after_indexing_leaves_only_a_stale_entry(
    backend: RedisBackend,
) -> None:
    """Claimed and indexed, never created: no scope is found; once the claim lapses its
    entries are stale, and the next search removes them."""
    place = actor(new_tag())
    stored = await claim_only(backend, place)
    await backend._add_members({place.key: stored})
    identity = IdentityFilter({"actor_id": "u-1"})
    assert await found(backend, identity) == {}
    ctx_key = backend._keys(place.key)[2]
    assert ctx_key in await keys_of(backend)  # a claim under way is left alone

    await raw(backend, "PEXPIRE", ctx_key, 1)
    await asyncio.sleep(0.01)
    assert await found(backend, identity) == {}
    assert await keys_of(backend) == {
        key for key in index_keys(backend.key_prefix, place.context) if ":actor_id:" not in key
    }
    result = await backend.erase(IdentityFilter({"runner_id": place.context.runner_id}))
    assert (result.scopes, result.entries) == (0, 0)
    assert await keys_of(backend) == {
        key
        for key in index_keys(backend.key_prefix, place.context)
        if ":actor_id:" not in key and ":runner_id:" not in key
    }


async def test_a_write_presenting_another_token_creates_nothing(backend: RedisBackend) -> None:
    """A context argument with a token the stored context does not have (absent here)
    is a claim like any other: refused, the scope not created."""
    place = actor(new_tag())
    value_key, meta_key, ctx_key, idx_key = backend._keys(place.key)
    reply = await raw(
        backend,
        *("EVAL", SCRIPTS[WRITE_SHA], 4, value_key, meta_key, ctx_key, idx_key),
        *("", "k", "1", "123:" + context_json(place.context)),
    )
    assert int(reply[0]) == -2
    token, context = stored_context(text(reply[2]))
    assert (token != "123", context) == (True, place.context)
    assert not await raw(backend, "EXISTS", value_key)


async def test_a_batch_with_a_new_scope_writes_nothing_until_it_is_indexed(
    backend: RedisBackend,
) -> None:
    """``set_many`` over an existing scope and a new one: the first attempt writes neither
    (atomic), the batch as a whole goes through after the new one is indexed."""
    old, new = actor(new_tag()), actor(new_tag())
    await backend.set(StateWrite(old.key, "a", "1", old.context))
    await backend.set_many(
        [StateWrite(old.key, "a", "2", old.context), StateWrite(new.key, "a", "1", new.context)]
    )
    assert await backend.get_versioned(old.key, "a") == ("2", 2)
    assert await backend.get_versioned(new.key, "a") == ("1", 1)
    await assert_indexed(backend, new)


# ---- stale entries ----------------------------------------------------------------


async def test_erase_removes_every_index_entry_of_the_scope(backend: RedisBackend) -> None:
    """Not only the set it searched: the scope's entries in all six of its sets."""
    place = actor(new_tag())
    await backend.set(StateWrite(place.key, "k", "1", place.context))
    result = await backend.erase(IdentityFilter({"actor_id": "u-1"}))
    assert (result.scopes, result.entries) == (1, 1)
    assert await keys_of(backend) == set()


async def test_an_expired_scope_is_absent_and_its_entries_are_removed_by_erase(
    backend: RedisBackend,
) -> None:
    place = actor(new_tag())
    await backend.set(StateWrite(place.key, "k", "1", place.context, ttl=SHORT))
    await sleep_past(await deadline(backend, place))
    result = await backend.erase(IdentityFilter({"runner_id": place.context.runner_id}))
    assert (result.scopes, result.entries) == (0, 0)
    assert await keys_of(backend) == {
        key for key in index_keys(backend.key_prefix, place.context) if ":runner_id:" not in key
    }


async def test_the_sweep_removes_entries_no_search_reads(backend: RedisBackend) -> None:
    """A pass of the sweep over the identity sets removes the entries of expired scopes
    and keeps those of live ones."""
    tag = new_tag()
    gone, live = actor(tag, "u-1"), actor(tag, "u-2")
    await backend.set(StateWrite(gone.key, "k", "1", gone.context, ttl=SHORT))
    await backend.set(StateWrite(live.key, "k", "1", live.context))
    await sleep_past(await deadline(backend, gone))
    assert await backend.prune_identity_index(batch_size=10_000) == 6
    assert await keys_of(backend) == scope_keys(backend, live) | set(
        index_keys(backend.key_prefix, live.context)
    )
    await assert_indexed(backend, live)
    assert await backend.prune_identity_index(batch_size=10_000) == 0


async def test_the_sweep_goes_on_where_it_stopped(backend: RedisBackend) -> None:
    """A small batch checks a few sets per call; calls in turn cover every set."""
    tag = new_tag()
    places = [actor(tag, f"u-{n}") for n in range(5)]
    await backend.set_many([StateWrite(p.key, "k", "1", p.context, SHORT) for p in places])
    await sleep_past(await deadline(backend, places[0]))
    removed = [await backend.prune_identity_index(batch_size=1) for _ in range(60)]
    assert all(n <= 5 for n in removed)  # one set per call: at most all its members
    assert sum(removed) == 5 * 6
    assert await keys_of(backend) == set()


async def test_scopes_of_an_earlier_version_are_indexed_by_index_existing_scopes(
    backend: RedisBackend,
) -> None:
    """A scope whose context has no token and no index entries (written before identity
    indexes) takes writes as before and is found once indexed."""
    place = actor(new_tag())
    await backend.set(StateWrite(place.key, "a", "1", place.context))
    ctx_key = backend._keys(place.key)[2]
    await raw(backend, "SET", ctx_key, json.dumps(place.context.as_dict()))
    await raw(backend, "DEL", *index_keys(backend.key_prefix, place.context))
    identity = IdentityFilter({"actor_id": "u-1"})
    assert await found(backend, identity) == {}
    assert await backend.set(StateWrite(place.key, "b", "1", place.context)) == 1
    assert await backend.index_existing_scopes() == 1
    assert set(await found(backend, identity)) == {place.key}
    await assert_indexed(backend, place)
    assert await backend.index_existing_scopes() == 0


async def test_statekit_init_indexes_scopes_of_an_earlier_version(backend: RedisBackend) -> None:
    """``StateStore.create_schema`` (``statekit init``) runs the indexing and says so."""
    place = actor(new_tag())
    await backend.set(StateWrite(place.key, "a", "1", place.context))
    await raw(backend, "SET", backend._keys(place.key)[2], json.dumps(place.context.as_dict()))
    await raw(backend, "DEL", *index_keys(backend.key_prefix, place.context))
    store = StateStore(backend)  # not closed: the fixture owns the backend
    assert await store.create_schema() == ["index 1 scopes written before the identity index"]
    assert await store.create_schema() == []
    await assert_indexed(backend, place)


# ---- exactness and races --------------------------------------------------------

ADVERSARIAL_IDS = ["u-1", "u-10", "U-1", "u-1 ", " u-1", "u:1", "{u-1}", "u-1}", "{", "u-*", "ü-1"]


@pytest.mark.parametrize("target", ADVERSARIAL_IDS)
async def test_ids_with_key_syntax_match_exactly(backend: RedisBackend, target: str) -> None:
    """Braces, glob characters, spaces and case never widen a match (ids are digested
    into set names, and every candidate is checked against its stored context)."""
    tag = new_tag()
    places = {actor_id: actor(tag, actor_id) for actor_id in ADVERSARIAL_IDS}
    await backend.set_many([StateWrite(p.key, "k", "1", p.context) for p in places.values()])
    identity = IdentityFilter({"actor_id": target, "workspace_id": f"{tag}.workspace_id"})
    assert set(await found(backend, identity)) == {places[target].key}
    assert (await backend.erase(identity)).scopes == 1
    left = await backend.read_scopes([p.key for p in places.values()])
    assert {key for key, entries in left.items() if entries} == {
        p.key for actor_id, p in places.items() if actor_id != target
    }


async def test_a_scope_erased_and_created_again_concurrently_is_always_indexed(
    backend: RedisBackend,
) -> None:
    """Writers create the same scopes again and again while erases remove them: whatever
    the interleaving, a scope that exists afterwards is in every one of its sets."""
    tag = new_tag()
    places = [actor(tag, f"u-{n}", actor_type="user") for n in range(3)]
    identity = IdentityFilter({"actor_type": "user", "workspace_id": f"{tag}.workspace_id"})
    stop = False

    async def write(place: Place) -> None:
        n = 0
        while not stop:
            await backend.set(StateWrite(place.key, f"k{n % 3}", str(n), place.context))
            n += 1
            await asyncio.sleep(0)  # fakeredis never waits: let the others run

    async def erase() -> None:
        for _ in range(30):
            await backend.erase(identity)
            await asyncio.sleep(0)

    writers = [asyncio.create_task(write(place)) for place in places for _ in range(2)]
    try:
        await erase()
    finally:
        stop = True
        await asyncio.gather(*writers)
    for place in places:
        await assert_indexed(backend, place)
    assert set(await found(backend, identity)) == {
        p.key for p in places if await raw(backend, "EXISTS", backend._keys(p.key)[0])
    }


# ---- cost ---------------------------------------------------------------------------


async def _load_scripts(server: RedisServer) -> None:
    """Every script loaded, so that no first call meets ``NOSCRIPT`` (and loads it)."""
    async with server.client() as admin:
        for script in SCRIPTS.values():
            await admin.script_load(script)


async def _calls(client: Any) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name: int(stat["calls"]) for name, stat in stats.items()}


async def test_find_and_erase_cost_the_same_whatever_else_the_store_holds(
    own_server: RedisServer,
) -> None:
    """The same commands, as the server counts them (its own server: no other client
    adds to them), to find and erase one actor's three scopes among 10 or 1000 unrelated
    scopes: no scan, nothing read of the others."""
    costs = []
    await _load_scripts(own_server)
    for unrelated in (10, 1000):
        tag = new_tag()
        mine = [actor(tag, "u-7", runner_id=f"r-{n}") for n in range(3)]
        others = [actor(tag, f"other-{n}") for n in range(unrelated)]
        async with own_server.backend(key_prefix=f"p{unrelated}:") as backend:
            await backend.set_many([StateWrite(p.key, "k", "1", p.context) for p in mine + others])
            identity = IdentityFilter({"actor_id": "u-7", "workspace_id": f"{tag}.workspace_id"})
            async with own_server.client() as admin:
                await admin.config_resetstat()
                assert len(await found(backend, identity)) == 3
                assert (await backend.erase(identity)).scopes == 3
                costs.append(await _calls(admin))
    assert "cmdstat_scan" not in costs[1]
    assert costs[0] == costs[1]


async def test_a_write_to_an_existing_scope_is_one_script_call(own_server: RedisServer) -> None:
    """The index costs nothing on writes to scopes that exist; creating one costs two
    more script calls (the claim refused, the index entries), once."""
    place = actor(new_tag())
    await _load_scripts(own_server)
    async with own_server.backend(key_prefix="w:") as backend, own_server.client() as admin:
        await admin.config_resetstat()
        await backend.set(StateWrite(place.key, "k0", "0", place.context))
        assert (await _calls(admin))["cmdstat_evalsha"] == 3
        await admin.config_resetstat()
        for n in range(10):
            await backend.set(StateWrite(place.key, f"k{n % 2}", str(n), place.context))
        calls = await _calls(admin)
        assert calls["cmdstat_evalsha"] == 10
        assert calls["cmdstat_zadd"] == 1  # k1 into the scope's listing index, no more


# ---- the members --------------------------------------------------------------------


@given(
    name=st.sampled_from(["conversation", "actor", "subject", "runner"]),
    digest=st.binary(min_size=32, max_size=32),
    token=st.from_regex(r"[0-9]{1,20}", fullmatch=True),
)
def test_a_store_scope_key_is_a_member_of_at_most_64_bytes(
    name: str, digest: bytes, token: str
) -> None:
    """Under the size up to which Redis keeps small sorted sets compact, and read back
    as the same scope key and token."""
    scope_key = f"{name}:v2:{digest.hex()}"
    member = index_member(scope_key, token[:16])
    assert len(member.encode()) <= 64
    assert parse_member(member) == (scope_key, token[:16])


@given(scope_key=st.text(min_size=1), token=st.from_regex(r"[0-9]{1,20}", fullmatch=True))
def test_any_other_scope_key_is_read_back_as_it_is(scope_key: str, token: str) -> None:
    assert parse_member(index_member(scope_key, token)) == (scope_key, token)
