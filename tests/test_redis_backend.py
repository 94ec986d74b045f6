"""What is specific to Redis: the key layout, prefixes, options, faults and durability."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import fakeredis
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis_servers import (
    REDIS_START,
    RedisServer,
    free_port,
    ping,
    private_prefix,
    redis_cli,
    shared_backend,
)
from services import service_url

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.redis import RedisBackend, glob_escape
from statekit.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    StateBackendError,
    VersionConflictError,
)

pytestmark = pytest.mark.redis

CONTEXT = ScopeContext(
    runner_id="r-1",
    binding_identity="b-1",
    scope="conversation",
    bot_id="bot-1",
    conversation_id="c-1",
    actor_type="user",
    actor_id="u-1",
)


@pytest_asyncio.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(service_url("STATEKIT_REDIS_URL"), decode_responses=True)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[RedisBackend]:
    async with shared_backend() as backend:
        yield backend


# ---- layout -------------------------------------------------------------------------


async def test_layout_is_one_hash_per_scope_with_meta_context_and_index(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    prefix = backend._prefix
    scope_key = "conversation:v2:abc"
    before = datetime.now(timezone.utc)
    assert await backend.set(StateWrite(scope_key, "k", '{"a":1}', CONTEXT)) == 1
    value_key = f"{prefix}{{{scope_key}}}"
    assert await raw.type(value_key) == "hash"
    assert await raw.hgetall(value_key) == {"k": '{"a":1}'}  # type: ignore[misc]
    version, created, updated = (await raw.hget(value_key + ":meta", "k")).split(":")  # type: ignore[misc]
    assert version == "1"
    assert created == updated
    created_at = datetime.fromtimestamp(int(created) / 1e6, timezone.utc)
    assert abs((created_at - before).total_seconds()) < 60  # server clock, same machine
    assert json.loads(await raw.get(value_key + ":ctx")) == CONTEXT.as_dict()
    assert await raw.zrange(value_key + ":idx", 0, -1, withscores=True) == [("k", 0.0)]
    assert sorted(await raw.keys(glob_escape(prefix) + "*")) == sorted(
        [value_key, value_key + ":meta", value_key + ":ctx", value_key + ":idx"]
    )

    other = ScopeContext(runner_id="r-2", binding_identity="b-2", scope="conversation")
    assert await backend.set(StateWrite(scope_key, "k", "2", other)) == 2
    version, created_again, updated_again = (await raw.hget(value_key + ":meta", "k")).split(":")  # type: ignore[misc]
    assert (version, created_again) == ("2", created)
    assert int(updated_again) >= int(updated)
    # The context stored at the scope's creation is kept.
    assert json.loads(await raw.get(value_key + ":ctx")) == CONTEXT.as_dict()

    assert await backend.delete(scope_key, "k") is True
    assert await raw.keys(glob_escape(prefix) + "*") == []


async def test_all_keys_of_a_scope_share_one_cluster_slot(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    await backend.set(StateWrite("actor:v2:xyz", "k", "1", CONTEXT))
    keys = await raw.keys(glob_escape(backend._prefix) + "*")
    slots = {key_slot(key.encode()) for key in keys}
    assert len(keys) == 4
    assert len(slots) == 1


async def test_conditional_set_conflict_writes_nothing(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    await backend.set(StateWrite("s", "k", "1", CONTEXT))
    with pytest.raises(VersionConflictError) as info:
        await backend.set(StateWrite("s", "k", "2", CONTEXT), 5)
    assert (info.value.expected, info.value.actual) == (5, 1)
    assert await backend.get_versioned("s", "k") == ("1", 1)


async def test_set_many_is_one_script_call_applied_in_order(backend: RedisBackend) -> None:
    writes = [
        StateWrite("s1", "a", "1", CONTEXT),
        StateWrite("s2", "b", "2", CONTEXT),
        StateWrite("s1", "a", "3", CONTEXT),
    ]
    await backend.set_many(writes)
    assert await backend.get_versioned("s1", "a") == ("3", 2)
    assert await backend.read_scopes(["s1", "s2", "s3"]) == {
        "s1": {"a": "3"},
        "s2": {"b": "2"},
        "s3": {},
    }


# ---- prefixes and glob escaping -------------------------------------------------------


def test_glob_escape_escapes_every_wildcard() -> None:
    assert glob_escape("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert glob_escape("plain:é") == "plain:é"


async def test_prefix_with_glob_characters_never_reaches_other_stores(
    raw: aioredis.Redis,
) -> None:
    url = service_url("STATEKIT_REDIS_URL")
    run = uuid.uuid4().hex
    # Unescaped, "g[ab]*?:" would also match the keys of "ga?x:" and "gb*:".
    globby = RedisBackend.from_url(url, key_prefix=f"t:{run}:g[ab]*?\\:")
    others = [
        RedisBackend.from_url(url, key_prefix=f"t:{run}:ga?x\\:"),
        RedisBackend.from_url(url, key_prefix=f"t:{run}:gb*:"),
    ]
    try:
        await globby.set(StateWrite("s", "mine", "1", CONTEXT))
        for other in others:
            await other.set(StateWrite("s", "theirs", "2", CONTEXT))
        assert [e.state_key async for e in globby.iter_entries()] == ["mine"]
        await globby.clear()
        assert [e async for e in globby.iter_entries()] == []
        for other in others:
            assert [e.state_key async for e in other.iter_entries()] == ["theirs"]
            assert await other.get("s", "theirs") == "2"
    finally:
        for b in (globby, *others):
            await b.clear()
            await b.aclose()
    assert await raw.keys(f"t:{run}:*") == []


async def test_two_stores_on_one_database_are_isolated(raw: aioredis.Redis) -> None:
    url = service_url("STATEKIT_REDIS_URL")
    base = private_prefix("iso")
    first = RedisBackend.from_url(url, key_prefix=base)
    # A prefix that extends the first one: "base" + "{" is the first store's key space.
    second = RedisBackend.from_url(url, key_prefix=base + "x:")
    try:
        await first.set(StateWrite("s", "k", "1", CONTEXT))
        await second.set(StateWrite("s", "k", "2", CONTEXT))
        assert [(e.scope_key, e.value_json) async for e in first.iter_entries()] == [("s", "1")]
        assert [(e.scope_key, e.value_json) async for e in second.iter_entries()] == [("s", "2")]
        await second.clear()
        assert await first.get("s", "k") == "1"
        assert await second.get("s", "k") is None
    finally:
        for b in (first, second):
            await b.clear()
            await b.aclose()


@pytest.mark.parametrize("prefix", ["", "a{b:", "a}b:"])
def test_prefixes_that_break_the_layout_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url("redis://127.0.0.1:1/0", key_prefix=prefix)


async def test_big_scope_lists_a_matching_prefix_exactly(backend: RedisBackend) -> None:
    await backend.set_many(
        [StateWrite("big", f"other:{i:05d}", "0", CONTEXT) for i in range(2000)]
        + [StateWrite("big", f"hit:{i:02d}", "1", CONTEXT) for i in range(50)]
    )
    keys, has_more = await backend.list_keys("big", "hit:", 20, "hit:09")
    assert keys == [f"hit:{i:02d}" for i in range(10, 30)]
    assert has_more is True
    keys, has_more = await backend.list_keys("big", "hit:", 100, None)
    assert len(keys) == 50
    assert has_more is False


async def test_listing_rebuilds_an_index_that_disagrees_with_the_scope(
    backend: RedisBackend, raw: aioredis.Redis
) -> None:
    """Scopes stored before the index existed (or edited by hand) list like any other."""
    await backend.set_many([StateWrite("s", f"k{i}", "1", CONTEXT) for i in range(5)])
    value_key = f"{backend._prefix}{{s}}"
    await raw.delete(value_key + ":idx")
    assert await backend.list_keys("s", "", 100, None) == ([f"k{i}" for i in range(5)], False)
    await raw.zrem(value_key + ":idx", "k3")
    await raw.zadd(value_key + ":idx", {"stale": 0, "stale2": 0})
    assert await backend.list_keys("s", "k", 2, "k1") == (["k2", "k3"], True)
    assert await raw.zcard(value_key + ":idx") == 5


async def test_describe_reports_the_server_version(backend: RedisBackend) -> None:
    info = await backend.describe()
    assert info.backend == "redis"
    assert info.server_version.split(".")[0].isdigit()
    assert info.layout_ok
    assert info.namespace == backend._prefix


async def test_describe_warns_when_the_server_may_evict_state(own_server: RedisServer) -> None:
    async with own_server.backend() as backend, own_server.client() as admin:
        assert (await backend.describe()).warnings == ()  # noeviction default
        await admin.config_set("maxmemory-policy", "allkeys-lru")
        info = await backend.describe()
        assert info.layout_ok
        assert info.warnings == ("maxmemory-policy allkeys-lru may evict state",)


@pytest.mark.slow
async def test_cluster_describe_and_batches_across_slots(redis_cluster_url: str) -> None:
    backend = RedisBackend.from_url(redis_cluster_url, key_prefix=private_prefix("cluster"))
    try:
        info = await backend.describe()
        assert info.backend == "redis-cluster"
        assert info.server_version.split(".")[0].isdigit()
        scopes = [f"scope-{i}" for i in range(20)]  # spread over the three masters
        assert len({key_slot(f"{{{s}}}".encode()) for s in scopes}) == 20
        await backend.set_many([StateWrite(s, "k", f'"{s}"', CONTEXT) for s in scopes])
        snapshot = await backend.read_scopes(scopes)
        assert snapshot == {s: {"k": f'"{s}"'} for s in scopes}
        assert len([e async for e in backend.iter_entries()]) == 20
        await backend.clear()
        assert await backend.read_scopes(scopes) == {s: {} for s in scopes}
    finally:
        await backend.clear()
        await backend.aclose()


# ---- options ----------------------------------------------------------------------------


def _pool_kwargs(backend: RedisBackend) -> dict[str, object]:
    return dict(backend._transport.client.connection_pool.connection_kwargs)  # type: ignore[union-attr]


def test_url_options_apply_and_keyword_arguments_win() -> None:
    url = (
        "redis://127.0.0.1:6390/2?key_prefix=url:&timeout=7&connect_timeout=3"
        "&pool_size=9&retries=4&client_name=from-url"
    )
    from_url = RedisBackend.from_url(url)
    kwargs = _pool_kwargs(from_url)
    assert from_url._prefix == "url:"
    # Auto-pipelining (the default) bounds each operation in the backend, not the socket.
    assert (from_url._transport.limits.timeout, kwargs["socket_connect_timeout"]) == (7.0, 3.0)
    assert "socket_timeout" not in kwargs
    assert kwargs["client_name"] == "from-url"
    assert kwargs["db"] == 2
    assert from_url._transport.client.connection_pool.max_connections == 9  # type: ignore[union-attr]
    assert kwargs["retry"].get_retries() == 4  # type: ignore[attr-defined]

    overridden = RedisBackend.from_url(
        url, key_prefix="kw:", timeout=1.5, pool_size=3, retries=0, client_name="kw"
    )
    kwargs = _pool_kwargs(overridden)
    assert overridden._prefix == "kw:"
    assert (overridden._transport.limits.timeout, kwargs["socket_connect_timeout"]) == (1.5, 3.0)
    assert kwargs["client_name"] == "kw"
    assert overridden._transport.client.connection_pool.max_connections == 3  # type: ignore[union-attr]
    assert kwargs["retry"].get_retries() == 0  # type: ignore[attr-defined]


def test_defaults() -> None:
    backend = RedisBackend.from_url("redis://127.0.0.1:6390")
    kwargs = _pool_kwargs(backend)
    assert backend._prefix == "statekit:"
    assert (backend._transport.limits.timeout, kwargs["socket_connect_timeout"]) == (5.0, 5.0)
    direct = RedisBackend.from_url("redis://127.0.0.1:6390?auto_pipeline=false&timeout=2")
    assert _pool_kwargs(direct)["socket_timeout"] == 2.0  # the client bounds each call
    assert direct._transport.limits.timeout is None
    assert backend._transport.client.connection_pool.max_connections == 32  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("redis://h:1?nonsense=1", {}),
        ("redis://h:1", {"nonsense": 1}),
        ("redis://h:1?timeout=soon", {}),
        ("redis://h:1", {"timeout": 0}),
        ("redis://h:1", {"pool_size": 0}),
        ("redis://h:1", {"retries": -1}),
        ("http://h:1", {}),
        ("redis+cluster://h", {}),
        ("redis+cluster://h:1/3", {}),
    ],
)
def test_bad_urls_and_options_are_refused_before_any_io(
    url: str, options: dict[str, object]
) -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(url, **options)


def test_repr_masks_the_password() -> None:
    for url in (
        "redis://user:s3cret@127.0.0.1:6390/0",
        "rediss://:s3cret@127.0.0.1:6390/0",
        "redis+cluster://user:s3cret@127.0.0.1:7000,127.0.0.1:7001",
    ):
        text = repr(RedisBackend.from_url(url))
        assert "s3cret" not in text
        assert "***" in text


def test_cluster_and_unix_urls_build_the_right_clients() -> None:
    from redis.asyncio.cluster import RedisCluster

    cluster = RedisBackend.from_url(
        "rediss+cluster://u:p@127.0.0.1:7000,[::1]:7001?timeout=2&pool_size=4"
    )
    assert isinstance(cluster._transport.client, RedisCluster)
    assert [(n.host, n.port) for n in cluster._transport.client.startup_nodes] == [
        ("127.0.0.1", 7000),
        ("::1", 7001),
    ]
    assert cluster._transport.limits.timeout == 2.0
    unix = RedisBackend.from_url("unix:///tmp/redis.sock?db=3&key_prefix=u:")
    assert _pool_kwargs(unix)["path"] == "/tmp/redis.sock"
    assert _pool_kwargs(unix)["db"] == 3
    assert unix._prefix == "u:"


async def test_a_host_owned_client_is_not_closed() -> None:
    client = aioredis.Redis.from_url(service_url("STATEKIT_REDIS_URL"))
    try:
        backend = RedisBackend(client, key_prefix=private_prefix())
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        await backend.clear()
        await backend.aclose()
        await backend.aclose()  # idempotent
        assert await client.ping() is True  # type: ignore[misc]
    finally:
        await client.aclose()


@pytest.mark.parametrize("owns_client", [True, False])
async def test_a_host_client_is_closed_on_aclose_only_when_handed_over(owns_client: bool) -> None:
    name = f"statekit-owns-{uuid.uuid4().hex[:8]}"
    url = service_url("STATEKIT_REDIS_URL")
    client = aioredis.Redis.from_url(url, client_name=name)
    admin = aioredis.Redis.from_url(url)
    try:
        backend = RedisBackend(
            client, key_prefix=private_prefix(), auto_pipeline=False, owns_client=owns_client
        )
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        await backend.clear()
        await backend.aclose()
        clients = await admin.client_list()
        still_open = [c for c in clients if c.get("name") == name]
        assert bool(still_open) is not owns_client
    finally:
        await client.aclose()
        await admin.aclose()


async def test_a_host_client_decoding_responses_works_too() -> None:
    client = fakeredis.FakeAsyncRedis(decode_responses=True)
    backend = RedisBackend(client=client, key_prefix="d:")
    try:
        await backend.set(StateWrite("s", "é", '"v"', CONTEXT))
        assert await backend.get("s", "é") == '"v"'
        assert await backend.get_versioned("s", "é") == ('"v"', 1)
        assert await backend.list_keys("s", "", 10, None) == (["é"], False)
        assert await backend.read_scopes(["s"]) == {"s": {"é": '"v"'}}
        (entry,) = [e async for e in backend.iter_entries()]
        assert (entry.scope_key, entry.state_key, entry.context) == ("s", "é", CONTEXT)
    finally:
        await backend.aclose()
        await client.aclose()


# ---- fairness without auto-pipelining ----------------------------------------------------


def test_without_auto_pipeline_a_fifo_gate_sized_like_the_pool_is_in_front_of_it() -> None:
    direct = RedisBackend.from_url(
        "redis://127.0.0.1:6390?auto_pipeline=false&pool_size=7&timeout=3"
    )
    gate = direct._transport.limits.gate
    assert gate is not None
    assert (gate.size, gate.timeout) == (7, 3.0)
    assert (
        RedisBackend.from_url("redis://127.0.0.1:6390")._transport.limits.gate is None
    )  # the pipeline's own
    pool = aioredis.BlockingConnectionPool.from_url("redis://127.0.0.1:6390", max_connections=4)
    host = RedisBackend(aioredis.Redis.from_pool(pool), auto_pipeline=False)
    gate = host._transport.limits.gate
    assert gate is not None
    assert (gate.size, gate.timeout) == (4, pool.timeout)
    plain = RedisBackend(aioredis.Redis.from_url("redis://127.0.0.1:6390"), auto_pipeline=False)
    assert plain._transport.limits.gate is None  # a plain pool never makes a caller wait


async def test_without_auto_pipeline_callers_get_a_connection_in_arrival_order() -> None:
    """A caller that has just finished and calls again queues behind those waiting: with
    one connection, a busy task cannot take it back before the others had their turn."""
    served: list[str] = []
    async with shared_backend(auto_pipeline=False, pool_size=1) as backend:

        async def get(name: str) -> None:
            assert await backend.get("s", "k") == "1"
            served.append(name)

        async def busy() -> None:
            for _ in range(3):
                await get("busy")

        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        first = asyncio.create_task(busy())
        await asyncio.sleep(0)  # its first call holds the only connection
        await asyncio.gather(first, get("a"), get("b"))
    assert served == ["busy", "a", "b", "busy", "busy"]


async def test_without_auto_pipeline_a_caller_waits_for_a_connection_at_most_timeout() -> None:
    async with shared_backend(auto_pipeline=False, pool_size=1, timeout=0.2) as backend:
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        gate = backend._transport.limits.gate
        assert gate is not None
        await gate.acquire()  # another operation holds the only connection
        with pytest.raises(BackendTimeoutError, match=r"no Redis connection free within 0\.2 s"):
            await asyncio.wait_for(backend.get("s", "k"), 10)
        with pytest.raises(BackendTimeoutError):
            await asyncio.wait_for(backend.set(StateWrite("s", "k", "2", CONTEXT)), 10)
        gate.release()
        assert await backend.get("s", "k") == "1"  # the write waiting in line never ran


# ---- faults ----------------------------------------------------------------------------


async def test_a_primary_without_enough_replicas_refuses_writes_with_a_typed_error(
    own_server: RedisServer,
) -> None:
    """``min-replicas-to-write`` (what narrows an unplanned failover's loss, see
    docs/backends/sentinel.md): a write the primary refuses raises and writes nothing."""
    async with own_server.backend(key_prefix="m:") as backend, own_server.client() as admin:
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        await admin.config_set("min-replicas-to-write", 1)  # and no replica at all
        for call in (
            backend.set(StateWrite("s", "k", "2", CONTEXT)),
            backend.set(StateWrite("s", "new", "2", CONTEXT)),
            backend.set_many([StateWrite("s", "k", "3", CONTEXT)]),
            backend.delete("s", "k"),
        ):
            with pytest.raises(StateBackendError, match="NOREPLICAS") as info:
                await call
            assert not isinstance(info.value, BackendUnavailableError)
        assert await backend.get_versioned("s", "k") == ("1", 1)  # reads still answer
        assert await backend.get("s", "new") is None
        await admin.config_set("min-replicas-to-write", 0)
        assert await backend.set(StateWrite("s", "k", "4", CONTEXT)) == 2


async def test_listing_reads_only_the_matching_range_of_the_index(
    own_server: RedisServer,
) -> None:
    """A prefix range of the index, not a scan of the scope, whatever the scope's size:
    the server's command counts (its own server, so no other client adds to them) show
    one ``ZRANGEBYLEX`` per listing and no scan."""
    async with own_server.backend() as backend, own_server.client() as raw:
        await backend.set_many(
            [StateWrite("s", f"other:{i:05d}", "0", CONTEXT) for i in range(3000)]
            + [StateWrite("s", f"hit:{i:02d}", "1", CONTEXT) for i in range(50)]
        )
        await backend.list_keys("s", "hit:", 100, None)  # the index checked once
        await raw.config_resetstat()
        assert await backend.list_keys("s", "hit:", 20, "hit:09") == (
            [f"hit:{i:02d}" for i in range(10, 30)],
            True,
        )
        stats = await raw.info("commandstats")
        assert stats["cmdstat_zrangebylex"]["calls"] == 1
        assert not {"cmdstat_hscan", "cmdstat_hkeys", "cmdstat_zrange"} & set(stats)


async def test_server_down_raises_unavailable_then_the_same_backend_recovers(
    own_server: RedisServer,
) -> None:
    async with own_server.backend(
        timeout=0.5, connect_timeout=0.5, retries=1, key_prefix="f:"
    ) as backend:
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        own_server.kill()
        for call in (
            backend.get("s", "k"),
            backend.set(StateWrite("s", "k", "2", CONTEXT)),
            backend.read_scopes(["s"]),
            backend.describe(),
        ):
            # wait_for only guards the test against a hang; the error must come first.
            with pytest.raises(BackendUnavailableError) as info:
                await asyncio.wait_for(call, 10)
            assert not isinstance(info.value, BackendTimeoutError)
        with pytest.raises(BackendUnavailableError):
            await asyncio.wait_for(_drain(backend), 10)

        own_server.start()  # same port, empty (no persistence)
        assert await backend.get("s", "k") is None
        assert await backend.set(StateWrite("s", "k", "3", CONTEXT)) == 1
        assert await backend.get("s", "k") == "3"


async def _drain(backend: RedisBackend) -> None:
    async for _ in backend.iter_entries():
        pass


async def test_slow_server_raises_timeout_then_recovers(own_server: RedisServer) -> None:
    async with own_server.backend(timeout=0.3, retries=1, key_prefix="f:") as backend:
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        async with own_server.busy(1.5) as sleeping:
            with pytest.raises(BackendTimeoutError):
                await asyncio.wait_for(backend.get("s", "k"), 10)
            await sleeping
        assert await backend.get("s", "k") == "1"


async def test_unreachable_server_fails_fast_with_a_typed_error() -> None:
    backend = RedisBackend.from_url(
        f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5, retries=2
    )
    try:
        with pytest.raises(BackendUnavailableError):
            await asyncio.wait_for(backend.describe(), 10)
    finally:
        await backend.aclose()


# ---- durability ----------------------------------------------------------------------


def _shutdown(port: int, pidfile: Path) -> None:
    redis_cli(port, "shutdown")
    deadline = time.monotonic() + 10
    while ping(port) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pidfile.exists():
        pid = int(pidfile.read_text())
        subprocess.run(["kill", "-9", str(pid)], capture_output=True, check=False)


async def test_acknowledged_writes_survive_a_restart_with_the_shipped_config(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = tmp_path / "data"

    def start() -> str:
        result = subprocess.run(
            ["bash", str(REDIS_START), str(port), str(data)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout.strip()

    url = start()
    try:
        backend = RedisBackend.from_url(url, key_prefix="durable:")
        assert await backend.set(StateWrite("s", "one", "1", CONTEXT)) == 1
        await backend.set_many([StateWrite("s", f"k{i}", str(i), CONTEXT) for i in range(100)])
        assert await backend.set(StateWrite("s", "one", "2", CONTEXT), 1) == 2
        await backend.aclose()
        _shutdown(port, data / "redis.pid")
        assert list((data / "appendonlydir").iterdir())  # the AOF, as configured

        start()
        backend = RedisBackend.from_url(url, key_prefix="durable:")
        assert await backend.get_versioned("s", "one") == ("2", 2)
        stored = (await backend.read_scopes(["s"]))["s"]
        assert stored == {"one": "2", **{f"k{i}": str(i) for i in range(100)}}
        (entry,) = [e async for e in backend.iter_entries() if e.state_key == "one"]
        assert entry.context == CONTEXT
        await backend.aclose()
    finally:
        _shutdown(port, data / "redis.pid")
