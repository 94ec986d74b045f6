"""A reply lost after the server ran the command: writes are never sent twice, reads are.

A proxy between the backend and the server forwards a chosen command, waits until the
server answers it (so the server has run it), then closes the client's connection
instead of passing the reply on: the case where resending a write applies it twice, or
makes a conditional write report a conflict with itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis_servers import private_prefix, shared_backend
from services import service_url

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.redis import RedisBackend
from statekit.errors import BackendTimeoutError, BackendUnavailableError

pytestmark = pytest.mark.redis

CONTEXT = ScopeContext(runner_id="r-1", binding_identity="b-1", scope="conversation")


class LossyProxy:
    """A TCP proxy that, once told a marker, loses the reply to the next command carrying
    it: the command reaches the server, and when the server's reply comes back the
    client's connection is closed instead."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.lost = 0  # replies lost so far
        self._marker: bytes | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def lose_reply_to(self, marker: str) -> None:
        self._marker = marker.encode()

    def url(self, db: str) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/{db}"

    async def __aenter__(self) -> LossyProxy:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        doomed = asyncio.Event()  # the next reply on this connection is lost

        async def to_server() -> None:
            while data := await client_reader.read(65536):
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    doomed.set()
                server_writer.write(data)
                await server_writer.drain()

        async def to_client() -> None:
            while data := await server_reader.read(65536):
                if doomed.is_set():
                    self.lost += 1
                    return  # the server has run the command; its reply goes nowhere
                client_writer.write(data)
                await client_writer.drain()

        pumps = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_writer, server_writer):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            self._tasks.discard(task)


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[LossyProxy]:
    parts = urlsplit(service_url("STATEKIT_REDIS_URL"))
    async with LossyProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as lossy:
        yield lossy


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RedisBackend]:
    """The same store reached directly, to see what the server really holds."""
    async with shared_backend("lost") as backend:
        yield backend


@pytest_asyncio.fixture(params=[True, False], ids=["auto_pipeline", "direct"])
async def backend(
    request: pytest.FixtureRequest, proxy: LossyProxy, server: RedisBackend
) -> AsyncIterator[RedisBackend]:
    """The store through the proxy, with the default retries."""
    db = urlsplit(service_url("STATEKIT_REDIS_URL")).path.strip("/") or "0"
    backend = RedisBackend.from_url(
        proxy.url(db), key_prefix=server._prefix, auto_pipeline=request.param
    )
    yield backend
    await backend.aclose()


async def test_the_proxy_loses_a_reply_after_the_server_ran_the_command(
    proxy: LossyProxy,
) -> None:
    """What the backend must not do: a client that retries after a lost reply (redis-py's
    ``Retry``) runs the command twice."""
    db = urlsplit(service_url("STATEKIT_REDIS_URL")).path.strip("/") or "0"
    retrying = aioredis.Redis.from_url(proxy.url(db), retry=Retry(NoBackoff(), 3))
    key = private_prefix("lost") + "counter"
    try:
        proxy.lose_reply_to(key)
        assert await retrying.incr(key) == 2
        assert proxy.lost == 1
    finally:
        await retrying.delete(key)
        await retrying.aclose()


# ---- writes: never sent twice --------------------------------------------------------


async def test_a_write_whose_reply_is_lost_is_applied_once_and_raises(
    backend: RedisBackend, server: RedisBackend, proxy: LossyProxy
) -> None:
    assert await backend.set(StateWrite("s", "k", "1", CONTEXT)) == 1
    proxy.lose_reply_to("lost-write")
    with pytest.raises(BackendUnavailableError) as info:
        await backend.set(StateWrite("s", "lost-write", "2", CONTEXT))
    assert not isinstance(info.value, BackendTimeoutError)
    assert proxy.lost == 1
    assert await server.get_versioned("s", "lost-write") == ("2", 1)

    proxy.lose_reply_to("lost-write")
    with pytest.raises(BackendUnavailableError):
        await backend.set(StateWrite("s", "lost-write", "3", CONTEXT))
    assert await server.get_versioned("s", "lost-write") == ("3", 2)  # +1, not +2
    # The backend carries on over a new connection.
    assert await backend.set(StateWrite("s", "lost-write", "4", CONTEXT)) == 3


async def test_a_conditional_write_whose_reply_is_lost_raises_no_false_conflict(
    backend: RedisBackend, server: RedisBackend, proxy: LossyProxy
) -> None:
    assert await backend.set(StateWrite("s", "cas", "1", CONTEXT)) == 1
    proxy.lose_reply_to('"written-once"')
    with pytest.raises(BackendUnavailableError):  # not VersionConflictError
        await backend.set(StateWrite("s", "cas", '"written-once"', CONTEXT), 1)
    assert await server.get_versioned("s", "cas") == ('"written-once"', 2)


async def test_set_many_delete_and_clear_whose_replies_are_lost_are_not_sent_again(
    backend: RedisBackend, server: RedisBackend, proxy: LossyProxy
) -> None:
    await backend.set_many([StateWrite("s", f"k{i}", "0", CONTEXT) for i in range(3)])
    proxy.lose_reply_to("batch-lost")
    with pytest.raises(BackendUnavailableError):
        await backend.set_many(
            [StateWrite("s", f"k{i}", '"batch-lost"', CONTEXT) for i in range(3)]
        )
    for i in range(3):
        assert await server.get_versioned("s", f"k{i}") == ('"batch-lost"', 2)

    proxy.lose_reply_to("k1")
    with pytest.raises(BackendUnavailableError):
        await backend.delete("s", "k1")
    assert await server.get_versioned("s", "k1") == (None, 0)

    proxy.lose_reply_to("UNLINK")
    with pytest.raises(BackendUnavailableError):
        await backend.clear()
    assert proxy.lost == 3
    assert await server.read_scopes(["s"]) == {"s": {}}


async def test_only_the_writes_of_a_lost_pipelined_batch_fail(
    server: RedisBackend, proxy: LossyProxy
) -> None:
    """One batch of concurrent calls loses its replies: its writes raise and were
    applied once; its reads are sent again and answer."""
    db = urlsplit(service_url("STATEKIT_REDIS_URL")).path.strip("/") or "0"
    backend = RedisBackend.from_url(proxy.url(db), key_prefix=server._prefix)
    try:
        await backend.set_many([StateWrite("s", f"k{i}", str(i), CONTEXT) for i in range(10)])
        blocker = asyncio.create_task(backend.get("s", "k0"))  # in flight: the rest queue
        proxy.lose_reply_to("batch-member")
        calls: list[Any] = [
            *(backend.set(StateWrite("s", f"w{i}", '"batch-member"', CONTEXT)) for i in range(5)),
            *(backend.get("s", f"k{i}") for i in range(10)),
        ]
        results = await asyncio.gather(blocker, *calls, return_exceptions=True)
    finally:
        await backend.aclose()
    assert proxy.lost == 1
    assert results[0] == "0"
    writes, reads = results[1:6], results[6:]
    assert reads == [str(i) for i in range(10)]
    assert all(isinstance(result, BackendUnavailableError) for result in writes)
    for i in range(5):
        assert await server.get_versioned("s", f"w{i}") == ('"batch-member"', 1)


# ---- reads: sent again -----------------------------------------------------------------


async def test_reads_whose_replies_are_lost_are_sent_again(
    backend: RedisBackend, server: RedisBackend, proxy: LossyProxy
) -> None:
    await server.set(StateWrite("snapshot-scope", "k", "1", CONTEXT))
    await server.set(StateWrite("s", "read-lost", '"v"', CONTEXT))

    proxy.lose_reply_to("read-lost")
    assert await backend.get("s", "read-lost") == '"v"'
    proxy.lose_reply_to("read-lost")
    assert await backend.get_versioned("s", "read-lost") == ('"v"', 1)
    proxy.lose_reply_to("snapshot-scope")
    assert await backend.read_scopes(["snapshot-scope", "s"]) == {
        "snapshot-scope": {"k": "1"},
        "s": {"read-lost": '"v"'},
    }
    proxy.lose_reply_to(":idx")  # the listing script names the index
    assert await backend.list_keys("s", "read", 10, None) == (["read-lost"], False)
    assert proxy.lost == 4


async def test_without_retries_a_read_whose_reply_is_lost_raises(
    proxy: LossyProxy, server: RedisBackend
) -> None:
    db = urlsplit(service_url("STATEKIT_REDIS_URL")).path.strip("/") or "0"
    backend = RedisBackend.from_url(proxy.url(db), key_prefix=server._prefix, retries=0)
    try:
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        proxy.lose_reply_to("HGET")
        with pytest.raises(BackendUnavailableError):
            await backend.get("s", "k")
        assert await backend.get("s", "k") == "1"
    finally:
        await backend.aclose()


# ---- cluster ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_cluster_writes_whose_replies_are_lost_are_not_sent_again(
    redis_cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node runs the command, then its reply is lost (simulated at the node): the
    cluster client's own retries must not send a write again, and do send a read again."""
    backend = RedisBackend.from_url(redis_cluster_url, key_prefix=private_prefix("lost"))
    lose: list[str] = []
    execute = ClusterNode.execute_command

    async def losing(node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        reply = await execute(node, *args, **kwargs)
        if lose and lose[0] in map(str, args):
            lose.clear()
            raise RedisConnectionError("Connection closed by server.")
        return reply

    monkeypatch.setattr(ClusterNode, "execute_command", losing)
    try:
        assert await backend.set(StateWrite("s", "k", "1", CONTEXT)) == 1
        lose.append("k")
        with pytest.raises(BackendUnavailableError):
            await backend.set(StateWrite("s", "k", "2", CONTEXT), 1)
        assert await backend.get_versioned("s", "k") == ("2", 2)
        lose.append("k")
        assert await backend.get("s", "k") == "2"
        lose.append("k")
        with pytest.raises(BackendUnavailableError):
            await backend.delete("s", "k")
        assert await backend.get_versioned("s", "k") == (None, 0)
    finally:
        monkeypatch.undo()
        await backend.clear()
        await backend.aclose()
