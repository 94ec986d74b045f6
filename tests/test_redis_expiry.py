"""Expiry on Redis: what is specific to it (the shared semantics are the contract's).

A scope's deadline is the expire time of its four keys, set in the write's script with
the server's clock. Redis keeps its own clock, so these tests run in real time: deadlines
far away (a minute) where a test reads them, ~150-300 ms where it waits for them. A read
racing a short deadline may see the scope either way, so such reads are checked against
the time they finished (absent is only right once the deadline may have passed).
Servers of a test's own and the ttl rules: ``test_redis_expiry_server.py``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import fakeredis
import pytest
import pytest_asyncio
from redis.asyncio.cluster import RedisCluster
from redis_expiry_support import (
    CONTEXT,
    FAR,
    SHORT,
    SLACK,
    expire_times,
    raw,
    scope_keys,
    shared,
    sleep_past,
    unique,
)
from services import on, open_target

from benchmarks.matrix import REDIS, REDIS_CLUSTER, REDIS_SENTINEL
from statekit.backends.base import NEVER, StateWrite, SweepResult
from statekit.backends.redis import RedisBackend
from statekit.errors import VersionConflictError

pytestmark = pytest.mark.redis

PIPELINING = pytest.mark.parametrize(
    "auto_pipeline", [True, False], ids=["auto_pipeline", "direct"], scope="class"
)


async def flush_scripts_on_every_primary(backend: RedisBackend) -> None:
    client = backend._transport.client
    assert isinstance(client, RedisCluster)
    await client.script_flush()  # the cluster client sends it to every primary


class RedisExpiryCases:
    """The Redis-specific expiry tests, run on every Redis target below."""

    # ---- the deadline on every key ----------------------------------------------------

    async def test_a_write_with_a_ttl_gives_all_four_keys_one_deadline_from_the_server_clock(
        self, backend: RedisBackend
    ) -> None:
        scope = unique()
        # The server's clock is this host's: the deadline falls between these two.
        before = time.time()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=FAR))
        after = time.time()
        times = await expire_times(backend, scope)
        assert shared(times) > 0
        deadline_ = await backend.scope_deadline(scope)
        assert deadline_ is not None
        # The first millisecond the scope is absent: one after the keys' expire time.
        assert deadline_.timestamp() == pytest.approx((times[0] + 1) / 1000, abs=1e-6)
        assert before + FAR - SLACK <= deadline_.timestamp() <= after + FAR + SLACK

    async def test_a_write_without_a_ttl_leaves_every_key_s_deadline(
        self, backend: RedisBackend
    ) -> None:
        scope = unique()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=FAR))
        times = await expire_times(backend, scope)
        await backend.set(StateWrite(scope, "b", "2", CONTEXT))  # a new key: index and meta grow
        await backend.set(StateWrite(scope, "a", "3", CONTEXT))
        await backend.set_many([StateWrite(scope, "c", "4", CONTEXT)])
        assert await expire_times(backend, scope) == times

    async def test_a_scope_written_without_a_ttl_has_no_deadline_on_any_key(
        self, backend: RedisBackend
    ) -> None:
        scope = unique()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT))
        assert await expire_times(backend, scope) == [-1, -1, -1, -1]
        assert await backend.scope_deadline(scope) is None

    async def test_each_write_with_a_ttl_moves_the_deadline_to_now_plus_ttl(
        self, backend: RedisBackend
    ) -> None:
        scope = unique()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=FAR))
        first = await expire_times(backend, scope)
        await backend.set(StateWrite(scope, "b", "2", CONTEXT, ttl=10 * FAR))
        later = await expire_times(backend, scope)
        assert shared(later) >= first[0] + 9 * FAR * 1000
        await backend.set(
            StateWrite(scope, "a", "3", CONTEXT, ttl=FAR / 2)
        )  # earlier: moved all the same
        earlier = await expire_times(backend, scope)
        assert shared(earlier) < first[0]

    async def test_never_removes_the_deadline_from_every_key(self, backend: RedisBackend) -> None:
        scope = unique()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=FAR))
        await backend.set(StateWrite(scope, "a", "2", CONTEXT, ttl=NEVER))
        assert await expire_times(backend, scope) == [-1, -1, -1, -1]
        assert await backend.scope_deadline(scope) is None
        assert await backend.get_versioned(scope, "a") == ("2", 2)

    async def test_a_refused_write_moves_no_deadline_and_writes_nothing(
        self, backend: RedisBackend
    ) -> None:
        scope = unique()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=FAR))
        times = await expire_times(backend, scope)
        with pytest.raises(VersionConflictError):
            await backend.set(StateWrite(scope, "a", "2", CONTEXT, ttl=10 * FAR), 7)
        with pytest.raises(VersionConflictError):
            await backend.set(StateWrite(scope, "a", "2", CONTEXT, ttl=NEVER), 7)
        assert await expire_times(backend, scope) == times
        assert await backend.get_versioned(scope, "a") == ("1", 1)

    @pytest.mark.parametrize("ttl", [0, -1.0, math.nan, -math.inf])
    async def test_an_invalid_ttl_is_refused_before_anything_is_written(
        self, backend: RedisBackend, ttl: float
    ) -> None:
        scope = unique()
        with pytest.raises(ValueError, match="ttl"):
            await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=ttl))
        with pytest.raises(ValueError, match="ttl"):
            await backend.set_many(
                [
                    StateWrite(scope, "b", "2", CONTEXT, ttl=FAR),
                    StateWrite(scope, "c", "3", CONTEXT, ttl=ttl),
                ]
            )
        assert await backend.read_scopes([scope]) == {scope: {}}
        assert await expire_times(backend, scope) == [-2, -2, -2, -2]

    async def test_set_many_moves_each_scope_s_deadline_by_its_own_writes(
        self, backend: RedisBackend
    ) -> None:
        timed, untimed, ended, mixed = unique(), unique(), unique(), unique()
        await backend.set(StateWrite(ended, "a", "0", CONTEXT, ttl=FAR))
        await backend.set_many(
            [
                StateWrite(timed, "a", "1", CONTEXT, ttl=FAR),
                StateWrite(untimed, "a", "2", CONTEXT),
                StateWrite(ended, "b", "3", CONTEXT, ttl=NEVER),
                StateWrite(mixed, "a", "4", CONTEXT, ttl=NEVER),
                StateWrite(mixed, "b", "5", CONTEXT, ttl=FAR),
                StateWrite(mixed, "c", "6", CONTEXT),  # None: leaves what "b" set
                StateWrite(timed, "b", "7", CONTEXT),
            ]
        )
        for scope in (timed, mixed):
            times = await expire_times(backend, scope)
            assert shared(times) > 0, scope
        assert await expire_times(backend, untimed) == [-1, -1, -1, -1]
        assert await expire_times(backend, ended) == [-1, -1, -1, -1]
        assert await backend.read_scopes([mixed]) == {mixed: {"a": "4", "b": "5", "c": "6"}}

    async def test_set_many_over_many_scopes_gives_each_its_deadline(
        self, backend: RedisBackend
    ) -> None:
        # On a cluster these scopes fall in many slots: one script per slot.
        scopes = [unique() for _ in range(24)]
        await backend.set_many(
            [StateWrite(s, "k", str(i), CONTEXT, ttl=FAR + i) for i, s in enumerate(scopes)]
        )
        deadlines = [await backend.scope_deadline(s) for s in scopes]
        assert all(d is not None for d in deadlines)
        stamps = [d.timestamp() for d in deadlines if d is not None]
        for i, stamp in enumerate(stamps[1:], 1):
            assert stamp - stamps[0] == pytest.approx(i, abs=0.5)

    async def test_a_rebuilt_listing_index_keeps_the_scope_s_deadline(
        self, backend: RedisBackend
    ) -> None:
        scope = unique()
        await backend.set_many(
            [StateWrite(scope, f"k{i}", "1", CONTEXT, ttl=FAR) for i in range(5)]
        )
        times = await expire_times(backend, scope)
        await raw(backend, "DEL", scope_keys(backend, scope)[3])  # as a scope from before the index
        assert await backend.list_keys(scope, "", 10, None) == ([f"k{i}" for i in range(5)], False)
        assert await expire_times(backend, scope) == times

    # ---- refresh on read --------------------------------------------------------------

    @pytest.mark.parametrize("read", ["get", "get_versioned", "read_scopes"])
    async def test_a_refresh_on_read_moves_every_key_s_existing_deadline(
        self, backend: RedisBackend, read: str
    ) -> None:
        scope, other = unique(), unique()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=FAR))
        await backend.set(StateWrite(other, "a", "1", CONTEXT, ttl=FAR))
        before, others = await expire_times(backend, scope), await expire_times(backend, other)
        assert await self._read(backend, read, scope, 10 * FAR) in ("1", ("1", 1), {"a": "1"})
        after = await expire_times(backend, scope)
        assert shared(after) >= before[0] + 9 * FAR * 1000
        assert await expire_times(backend, other) == others

    @pytest.mark.parametrize("read", ["get", "get_versioned", "read_scopes"])
    async def test_a_refresh_on_read_never_gives_a_deadline_nor_creates_keys(
        self, backend: RedisBackend, read: str
    ) -> None:
        kept, absent = unique(), unique()
        await backend.set(StateWrite(kept, "a", "1", CONTEXT))
        await self._read(backend, read, kept, FAR)
        await self._read(backend, read, absent, FAR)
        assert await expire_times(backend, kept) == [-1, -1, -1, -1]
        assert await expire_times(backend, absent) == [-2, -2, -2, -2]
        assert await backend.scope_deadline(kept) is None

    async def test_a_refresh_with_never_removes_an_existing_deadline_only(
        self, backend: RedisBackend
    ) -> None:
        timed, absent = unique(), unique()
        await backend.set(StateWrite(timed, "a", "1", CONTEXT, ttl=FAR))
        assert await backend.get(timed, "a", ttl=NEVER) == "1"
        assert await backend.read_scopes([absent], ttls={absent: NEVER}) == {absent: {}}
        assert await expire_times(backend, timed) == [-1, -1, -1, -1]
        assert await expire_times(backend, absent) == [-2, -2, -2, -2]

    async def test_read_scopes_refreshes_only_the_scopes_named_in_ttls(
        self, backend: RedisBackend
    ) -> None:
        named, unnamed = unique(), unique()
        for scope in (named, unnamed):
            await backend.set(StateWrite(scope, "a", scope, CONTEXT, ttl=FAR))
        untouched = await expire_times(backend, unnamed)
        read = await backend.read_scopes([unnamed, named, named], ttls={named: 10 * FAR})
        assert read == {unnamed: {"a": unnamed}, named: {"a": named}}
        assert await expire_times(backend, unnamed) == untouched
        assert (await expire_times(backend, named))[0] >= untouched[0] + 9 * FAR * 1000

    @staticmethod
    async def _read(backend: RedisBackend, read: str, scope: str, ttl: float) -> object:
        if read == "get":
            return await backend.get(scope, "a", ttl=ttl)
        if read == "get_versioned":
            return await backend.get_versioned(scope, "a", ttl=ttl)
        return (await backend.read_scopes([scope], ttls={scope: ttl}))[scope]

    # ---- expired means absent ---------------------------------------------------------

    async def test_a_scope_is_absent_everywhere_from_its_deadline_and_starts_afresh(
        self, backend: RedisBackend
    ) -> None:
        scope, kept = unique(), unique()
        await backend.set(StateWrite(kept, "a", "1", CONTEXT, ttl=FAR))
        writes = [StateWrite(scope, key, "1", CONTEXT, ttl=SHORT) for key in ("a", "b", "c")]
        # "a" again, without a ttl: version 2, the deadline left as the batch set it.
        await backend.set_many([*writes, StateWrite(scope, "a", "2", CONTEXT)])
        await sleep_past(time.time() + SHORT)
        assert await backend.get(scope, "a") is None
        assert await backend.get(scope, "a", ttl=FAR) is None
        assert await backend.get_versioned(scope, "a") == (None, 0)
        assert await backend.read_scopes([scope], ttls={scope: FAR}) == {scope: {}}
        assert await backend.list_keys(scope, "", 2, None) == ([], False)
        assert await backend.scope_deadline(scope) is None
        assert [e.scope_key async for e in backend.iter_entries()] == [kept]
        assert await backend.delete(scope, "b") is False
        assert await backend.set(StateWrite(scope, "a", "3", CONTEXT), 0) == 1
        assert await backend.read_scopes([scope]) == {scope: {"a": "3"}}
        assert await backend.scope_deadline(scope) is None  # a new scope, written without
        assert await backend.get(kept, "a") == "1"

    async def test_a_scope_is_live_until_its_deadline(self, backend: RedisBackend) -> None:
        ttl = 0.3
        scope = unique()
        start = time.time()
        await backend.set_many([StateWrite(scope, k, "1", CONTEXT, ttl=ttl) for k in ("a", "b")])
        reads: list[tuple[str, Callable[[], Awaitable[object]], object]] = [
            ("get", lambda: backend.get(scope, "a"), "1"),
            ("get_versioned", lambda: backend.get_versioned(scope, "a"), ("1", 1)),
            ("read_scopes", lambda: backend.read_scopes([scope]), {scope: {"a": "1", "b": "1"}}),
            ("list_keys", lambda: backend.list_keys(scope, "", 1, None), (["a"], True)),
            ("iter_entries", lambda: self._entries(backend), [scope, scope]),
        ]
        for name, read, live in reads:
            seen = await read()
            # Absent is right only once the deadline (>= start + ttl) may have passed.
            assert seen == live or time.time() >= start + ttl - SLACK, name
        deadline_ = await backend.scope_deadline(scope)
        assert deadline_ is not None or time.time() >= start + ttl - SLACK

    @staticmethod
    async def _entries(backend: RedisBackend) -> list[str]:
        return [entry.scope_key async for entry in backend.iter_entries()]

    async def test_iter_entries_carries_each_scope_s_deadline(self, backend: RedisBackend) -> None:
        timed, untimed = unique(), unique()
        await backend.set(StateWrite(timed, "a", "1", CONTEXT, ttl=FAR))
        await backend.set(StateWrite(untimed, "a", "1", CONTEXT))
        expires = {e.scope_key: e.expires_at async for e in backend.iter_entries()}
        assert expires == {timed: await backend.scope_deadline(timed), untimed: None}

    async def test_sweep_has_nothing_to_do_as_redis_reclaims_by_itself(
        self, backend: RedisBackend
    ) -> None:
        scope = unique()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=SHORT))
        await sleep_past(time.time() + SHORT)
        assert await backend.sweep_expired(batch_size=10) == SweepResult(0, 0)
        assert await expire_times(backend, scope) == [-2, -2, -2, -2]


# ---- the targets ----------------------------------------------------------------------


@PIPELINING
class TestFakeRedisExpiry(RedisExpiryCases):
    @pytest_asyncio.fixture
    async def backend(self, auto_pipeline: bool) -> AsyncIterator[RedisBackend]:
        client = fakeredis.FakeAsyncRedis()
        prefix = f"statekit-test:{uuid.uuid4().hex}:"
        backend = RedisBackend(client, key_prefix=prefix, auto_pipeline=auto_pipeline)
        yield backend
        await backend.aclose()
        await client.aclose()


@PIPELINING
@on(REDIS)
class TestRealRedisExpiry(RedisExpiryCases):
    @pytest_asyncio.fixture
    async def backend(
        self, request: pytest.FixtureRequest, auto_pipeline: bool
    ) -> AsyncIterator[RedisBackend]:
        async with open_target(REDIS, request, auto_pipeline=auto_pipeline) as backend:
            assert isinstance(backend, RedisBackend)
            yield backend


@on(REDIS_CLUSTER)
class TestRedisClusterExpiry(RedisExpiryCases):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[RedisBackend]:
        async with open_target(REDIS_CLUSTER, request) as backend:
            assert isinstance(backend, RedisBackend)
            yield backend

    async def test_refreshing_reads_load_the_scripts_a_node_lost(
        self, backend: RedisBackend
    ) -> None:
        """Pipelined reads with scripts (refresh, export) after ``SCRIPT FLUSH`` on every
        primary (the session's own cluster) load them again and answer."""
        scopes = [unique() for _ in range(6)]
        await backend.set_many([StateWrite(s, "a", "1", CONTEXT, ttl=FAR) for s in scopes])
        await flush_scripts_on_every_primary(backend)
        read = await backend.read_scopes(scopes, ttls=dict.fromkeys(scopes, 10 * FAR))
        assert read == {s: {"a": "1"} for s in scopes}
        for scope in scopes:
            assert shared(await expire_times(backend, scope)) > (time.time() + 9 * FAR) * 1000
        await flush_scripts_on_every_primary(backend)
        assert len([e async for e in backend.iter_entries()]) == len(scopes)


@PIPELINING
@on(REDIS_SENTINEL)
class TestRedisSentinelExpiry(RedisExpiryCases):
    @pytest_asyncio.fixture
    async def backend(
        self, request: pytest.FixtureRequest, auto_pipeline: bool
    ) -> AsyncIterator[RedisBackend]:
        async with open_target(REDIS_SENTINEL, request, auto_pipeline=auto_pipeline) as backend:
            assert isinstance(backend, RedisBackend)
            yield backend
