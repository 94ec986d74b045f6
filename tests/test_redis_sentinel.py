"""Redis behind Sentinel: the URL, and what a failover does to a backend in use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis_servers import free_port, private_prefix
from sentinel_servers import SERVICE, SentinelServers

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.redis import RedisBackend
from statekit.backends.redis.sentinel import WATCH_INTERVAL, SentinelTransport
from statekit.errors import BackendTimeoutError, BackendUnavailableError, ConfigurationError

pytestmark = pytest.mark.redis

CONTEXT = ScopeContext(runner_id="r-1", binding_identity="b-1", scope="conversation")


# ---- the URL (no I/O) -----------------------------------------------------------------


def _sentinel_pool(backend: RedisBackend) -> SentinelConnectionPool:
    assert isinstance(backend._transport, SentinelTransport)
    pool = backend._transport.client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    return pool


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    backend = RedisBackend.from_url(
        "redis+sentinel://user:s3cret@127.0.0.1:26379,[::1]:26380/mymaster/4"
        "?timeout=2&pool_size=6&key_prefix=s:",
        sentinel_password="sentinel-s3cret",
    )
    pool = _sentinel_pool(backend)
    manager = pool.sentinel_manager
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in manager.sentinels
    ] == [("127.0.0.1", 26379), ("::1", 26380)]
    assert manager.sentinel_kwargs["password"] == "sentinel-s3cret"
    assert pool.service_name == "mymaster"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (4, "user", "s3cret")
    assert pool.max_connections == 6
    assert backend._transport.limits.timeout == 2.0
    assert backend.key_prefix == "s:"
    text = repr(backend)
    assert "s3cret" not in text
    assert "redis+sentinel://user:***@127.0.0.1:26379" in text


def test_rediss_sentinel_speaks_tls_to_the_sentinels_and_the_data_nodes() -> None:
    backend = RedisBackend.from_url("rediss+sentinel://127.0.0.1:26379/mymaster?db=2")
    pool = _sentinel_pool(backend)
    assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    assert pool.connection_kwargs["db"] == 2
    (sentinel,) = pool.sentinel_manager.sentinels
    assert sentinel.connection_pool.connection_class.__name__ == "SSLConnection"


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("redis+sentinel://127.0.0.1:26379", {}),  # no service
        ("redis+sentinel://127.0.0.1:26379/mymaster/0/extra", {}),
        ("redis+sentinel://127.0.0.1:26379/mymaster/zero", {}),
        ("redis+sentinel://127.0.0.1/mymaster", {}),  # a Sentinel needs its port
        ("redis+sentinel://127.0.0.1:26379/mymaster?sentinel_password=x", {}),  # shown
        ("redis+sentinel://127.0.0.1:26379/mymaster?ssl_ca_certs=/ca.pem", {}),  # no TLS
        ("redis+sentinel://127.0.0.1:26379/mymaster", {"nonsense": 1}),
        ("redis://127.0.0.1:6379/0", {"sentinel_password": "x"}),  # Sentinel only
    ],
)
def test_bad_sentinel_urls_and_options_are_refused_before_any_io(
    url: str, options: dict[str, object]
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisBackend.from_url(url, **options)
    assert "sentinel_password=x" not in str(caught.value)


async def test_no_sentinel_answering_is_a_typed_error_not_a_hang() -> None:
    backend = RedisBackend.from_url(
        f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/0",
        connect_timeout=0.5,
        timeout=2,
        retries=1,
    )
    try:
        for call in (backend.get("s", "k"), backend.set(StateWrite("s", "k", "1", CONTEXT))):
            with pytest.raises(BackendUnavailableError):
                await asyncio.wait_for(call, 10)
    finally:
        await backend.aclose()


# ---- real servers ---------------------------------------------------------------------


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelServers]:
    servers = SentinelServers(tmp_path)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest_asyncio.fixture
async def raw_nodes(sentinel: SentinelServers) -> AsyncIterator[dict[int, aioredis.Redis]]:
    """A plain client per data node, to see what each one really holds."""
    clients = {port: aioredis.Redis(port=port, decode_responses=True) for port in sentinel.nodes}
    yield clients
    for client in clients.values():
        await client.aclose()


async def test_describe_names_the_sentinel_mode_and_writes_reach_the_primary(
    sentinel: SentinelServers, raw_nodes: dict[int, aioredis.Redis]
) -> None:
    backend = RedisBackend.from_url(sentinel.url(db=3), key_prefix="d:")
    try:
        info = await backend.describe()
        assert (info.backend, info.layout_ok, info.namespace) == ("redis-sentinel", True, "d:")
        assert info.url == sentinel.url(db=3)
        assert await backend.set(StateWrite("s", "k", '"v"', CONTEXT)) == 1
        primary = raw_nodes[sentinel.primary_port()]
        await primary.execute_command("SELECT", 3)  # type: ignore[no-untyped-call]
        assert await primary.hget("d:{s}", "k") == '"v"'  # type: ignore[misc]
    finally:
        await backend.aclose()


async def test_a_host_owned_sentinel_client_is_served_and_left_open(
    sentinel: SentinelServers,
) -> None:
    manager = Sentinel([("127.0.0.1", sentinel.sentinel_port)])  # type: ignore[no-untyped-call]
    client = manager.master_for(SERVICE)
    try:
        backend = RedisBackend(client, key_prefix=private_prefix("sentinel"))
        assert (await backend.describe()).backend == "redis-sentinel"
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        assert await backend.get("s", "k") == "1"
        await backend.clear()
        await backend.aclose()
        assert await client.ping() is True
    finally:
        await client.aclose()


async def _written_on(node: aioredis.Redis, key: str, field: str, value: str) -> bool:
    return bool(await node.hget(key, field) == value)  # type: ignore[misc]


@pytest.mark.slow
@pytest.mark.parametrize("auto_pipeline", [True, False], ids=["auto_pipeline", "direct"])
async def test_after_a_planned_failover_the_same_backend_serves_every_acknowledged_write(
    sentinel: SentinelServers, raw_nodes: dict[int, aioredis.Redis], auto_pipeline: bool
) -> None:
    """Writes acknowledged before ``SENTINEL FAILOVER``, and replicated (``WAIT``), are
    all read back from the new primary through the same backend, which also writes
    there; calls made during the failover either answer or raise a typed error."""
    backend = RedisBackend.from_url(
        sentinel.url(), key_prefix="f:", timeout=2, auto_pipeline=auto_pipeline
    )
    old = sentinel.primary_port()
    try:
        for i in range(50):
            assert await backend.set(StateWrite("s", f"k{i}", str(i), CONTEXT)) == 1
        await backend.set_many([StateWrite(f"scope{i}", "k", '"m"', CONTEXT) for i in range(20)])
        assert await backend.set(StateWrite("s", "k0", '"again"', CONTEXT)) == 2
        # Replicated: SENTINEL FAILOVER does not wait for the replica to catch up, so only
        # what it has received survives the promotion (see docs/backends/sentinel.md).
        await asyncio.to_thread(sentinel.wait_replicated)

        outcomes: list[object] = []
        stop = asyncio.Event()

        async def reader() -> None:
            while not stop.is_set():
                try:
                    outcomes.append(await asyncio.wait_for(backend.get("s", "k1"), 10))
                except (BackendUnavailableError, BackendTimeoutError) as exc:
                    outcomes.append(type(exc))
                await asyncio.sleep(0.02)

        reading = asyncio.create_task(reader())
        new = await asyncio.to_thread(sentinel.failover)
        assert new != old

        # The backend moves to the new primary within a few of its checks.
        deadline = time.monotonic() + 5  # a few of its checks; the old primary keeps ~10 s
        probe = 0
        while True:
            probe += 1
            try:
                await backend.set(StateWrite("probe", "k", str(probe), CONTEXT))
                if await _written_on(raw_nodes[new], "f:{probe}", "k", str(probe)):
                    break
            except (BackendUnavailableError, BackendTimeoutError):
                pass
            assert time.monotonic() < deadline, "the backend never wrote to the new primary"
            await asyncio.sleep(0.1)
        stop.set()
        await reading
        # One write reached the new primary over a connection opened since the switch;
        # within one more check of the Sentinels every connection has moved: concurrent
        # writes (over several connections) all land on the new primary, none on the old
        # one (which would lose them).
        await asyncio.sleep(2 * WATCH_INTERVAL)
        await asyncio.gather(
            *(backend.set(StateWrite("after", f"k{i}", "1", CONTEXT)) for i in range(30))
        )
        assert len(await raw_nodes[new].hgetall("f:{after}")) == 30  # type: ignore[misc]
        assert await raw_nodes[old].hgetall("f:{after}") == {}  # type: ignore[misc]

        assert await backend.get_versioned("s", "k0") == ('"again"', 2)
        assert await backend.read_scopes(["s"]) == {
            "s": {"k0": '"again"', **{f"k{i}": str(i) for i in range(1, 50)}}
        }
        snapshot = await backend.read_scopes([f"scope{i}" for i in range(20)])
        assert snapshot == {f"scope{i}": {"k": '"m"'} for i in range(20)}
        assert await backend.set(StateWrite("s", "k1", '"after"', CONTEXT)) == 2  # the same data
        assert await _written_on(raw_nodes[new], "f:{s}", "k1", '"after"')
        assert outcomes  # the reader ran throughout
        assert set(outcomes) <= {"1", BackendUnavailableError, BackendTimeoutError}
        assert outcomes[-1] == "1"
    finally:
        await backend.aclose()


async def test_a_connection_left_on_another_node_is_closed_at_the_next_check(
    sentinel: SentinelServers, raw_nodes: dict[int, aioredis.Redis]
) -> None:
    """A connection that finished connecting to the old primary after the backend saw the
    switch (it asked the Sentinels just before) is closed by the next check too."""
    backend = RedisBackend.from_url(sentinel.url(), key_prefix="w:")
    try:
        await backend.set(StateWrite("s", "k", "1", CONTEXT))  # one kept connection, to the primary
        transport = backend._transport
        assert isinstance(transport, SentinelTransport)
        (connection,) = transport.connections._opened  # type: ignore[union-attr]
        assert isinstance(connection, SentinelManagedConnection)
        await connection.disconnect()
        await connection.connect_to(("127.0.0.1", sentinel.replica_port()))  # type: ignore[no-untyped-call]
        await asyncio.sleep(2 * WATCH_INTERVAL)
        assert (
            await backend.set(StateWrite("s", "k", "2", CONTEXT)) == 2
        )  # not READONLY from the replica
        assert (connection.host, connection.port) == ("127.0.0.1", sentinel.primary_port())
        assert await raw_nodes[sentinel.primary_port()].hget("w:{s}", "k") == "2"  # type: ignore[misc]
    finally:
        await backend.aclose()
