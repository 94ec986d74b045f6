"""How commands reach one server (standalone or a Sentinel's primary): round trips, and
auto-pipelining.

The standalone transport sends its commands through :func:`round_trip`, on a connection
of the client's pool (:class:`PooledConnections`) or kept by the auto-pipeline
(:class:`KeptConnections`), never through redis-py's ``execute_command`` or its
pipelines: their ``Retry`` sends a command again when its reply is lost, so a write the
server had already applied would be applied twice (a version moved by two), or a
conditional write would report a conflict with itself. Here a connection's ``Retry`` only
ever retries *opening* it, before anything is sent; whether a command whose reply was
lost may be sent again is decided by the transport (reads may, writes never).

:class:`AutoPipeline` coalesces concurrent calls: a call made while nothing is in flight
is sent at once, alone; calls made while others are in flight queue up and go together
in one round trip (one write of all their commands, their replies read in order).

redis-py's private API is used in two places only, each one named function with a test
pinned to the supported redis-py versions: :func:`usable` (``Connection._reader``) and
:func:`checkout_needs_a_command_name` (the signature of ``get_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

__all__ = [
    "AutoPipeline",
    "Command",
    "KeptConnections",
    "NotSent",
    "PooledConnections",
    "Send",
    "check_out",
    "checkout_needs_a_command_name",
    "round_trip",
    "send_with_scripts",
    "usable",
]

#: One Redis command: its name and arguments, as sent.
Command = tuple[Any, ...]
#: Sends commands in one round trip; their replies in order, an error reply in its place.
Send = Callable[[Sequence[Command]], Awaitable[list[Any]]]


def _hiredis_packer() -> Callable[[Command], bytes] | None:
    try:
        from hiredis import pack_command
    except ImportError:  # pragma: no cover - redis-py packs in Python without hiredis
        return None
    return cast(Callable[[Command], bytes], pack_command)


_hiredis_pack = _hiredis_packer()

# A queued call: its commands, the caller's future, and when it was queued.
_Call = tuple[Sequence[Command], "asyncio.Future[list[Any]]", float]


def checkout_needs_a_command_name() -> bool:
    """Whether ``ConnectionPool.get_connection`` requires a command name: redis-py before
    5.3 does; later versions warn when given one (a probe of its signature, checked by a
    test against the supported redis-py versions)."""
    parameter = inspect.signature(ConnectionPool.get_connection).parameters.get("command_name")
    return parameter is not None and parameter.default is inspect.Parameter.empty


_NAMED_CHECKOUT = checkout_needs_a_command_name()


async def check_out(pool: ConnectionPool) -> AbstractConnection:
    """A connected connection from ``pool``, called as this redis-py version wants."""
    if _NAMED_CHECKOUT:  # pragma: no cover - redis-py < 5.3
        return await pool.get_connection("_")  # type: ignore[no-untyped-call,no-any-return]
    return await pool.get_connection()  # type: ignore[no-untyped-call,no-any-return]


class NotSent(RedisConnectionError):
    """No connection could be opened (its own ``Retry`` included): nothing was sent, so
    there is nothing whose outcome is unknown."""


async def round_trip(connection: AbstractConnection, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` in one write and read their replies, in order.

    A command's error reply (``WRONGTYPE``, ``NOSCRIPT``, ...) is returned in its place,
    the connection staying in step. Any other failure (a lost connection, a timeout, a
    cancellation) leaves the connection's state unknown: it is closed, then the error
    raised; the connection reconnects on its next use.
    """
    try:
        await connection.send_packed_command(_pack(connection, commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:
                replies.append(error)
        return replies
    except BaseException:
        await connection.disconnect(nowait=True)
        raise


def _pack(connection: AbstractConnection, commands: Sequence[Command]) -> bytes | list[bytes]:
    """The commands in the wire format; by hiredis (in C, about 8x faster than redis-py's
    Python packer on a write) when the connection encodes text as strict UTF-8 anyway."""
    encoder = connection.encoder
    if (
        _hiredis_pack is not None
        and encoder.encoding in ("utf-8", "utf8")
        and encoder.encoding_errors == "strict"
    ):
        return b"".join([_hiredis_pack(command) for command in commands])
    return connection.pack_commands(commands)


def usable(connection: AbstractConnection) -> bool:
    """Connected, and not closed by the server since its last use (a restart, ``CLIENT
    KILL``, an idle ``timeout``): what the event loop has already seen on the socket, so
    telling costs no round trip and no loop iteration (redis-py's pool check costs one).

    Reads redis-py's private ``Connection._reader`` (its ``asyncio.StreamReader``): the
    one place that does, checked by a test against the supported redis-py versions."""
    reader = connection._reader
    if reader is None or reader.at_eof():
        return False
    return not isinstance(reader, asyncio.StreamReader) or reader.exception() is None


class KeptConnections:
    """Round trips on connections of the auto-pipeline's own, kept between round trips.

    Opened with the client's connection settings (address, database, credentials, TLS,
    ``Retry`` for connecting) but outside its pool: the auto-pipeline makes at most
    ``max_in_flight + 1`` round trips at once, so it keeps that many connections at most,
    and taking one costs neither a pool checkout nor a liveness round trip. A connection
    the server has closed meanwhile is opened again before anything is sent on it.
    """

    def __init__(self, client: Redis) -> None:
        self._pool = client.connection_pool
        self._idle: list[AbstractConnection] = []
        self._opened: list[AbstractConnection] = []
        self._closed = False

    async def round_trip(self, commands: Sequence[Command]) -> list[Any]:
        if self._closed:
            raise NotSent("the connections were closed")
        if self._idle:
            connection = self._idle.pop()
        else:
            connection = self._pool.connection_class(**self._pool.connection_kwargs)
            self._opened.append(connection)
        try:
            if not usable(connection):
                await self._reconnect(connection)
            return await round_trip(connection, commands)
        finally:
            self._idle.append(connection)

    @staticmethod
    async def _reconnect(connection: AbstractConnection) -> None:
        await connection.disconnect()
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            raise NotSent(str(exc)) from exc
        except BaseException:
            # Cancelled or timed out half way (before AUTH or SELECT, say): never leave
            # it looking usable.
            await connection.disconnect(nowait=True)
            raise

    async def disconnect(
        self, unless: Callable[[AbstractConnection], bool] = lambda connection: False
    ) -> None:
        """Close every connection, in use or not, but those ``unless`` keeps: each opens
        again on its next use (a round trip under way on one fails with a connection
        error)."""
        for connection in self._opened:
            if not unless(connection):
                await connection.disconnect()

    async def abandon(self) -> None:
        """Forget every connection, opened on an event loop that has since stopped:
        each is reset without awaiting anything of that loop (closing its transport
        there raises ``RuntimeError`` once redis-py has forgotten it); its socket is
        closed when collected."""
        opened, self._opened, self._idle = self._opened, [], []
        for connection in opened:
            with contextlib.suppress(RuntimeError, OSError):
                await connection.disconnect(nowait=True)

    async def aclose(self) -> None:
        self._closed = True
        await self.disconnect()


class PooledConnections:
    """Round trips on connections checked out of a standalone client's pool."""

    def __init__(self, client: Redis) -> None:
        self._pool = client.connection_pool
        self._closed = False

    async def round_trip(self, commands: Sequence[Command]) -> list[Any]:
        if self._closed:
            raise NotSent("the connections were closed")
        try:
            connection = await check_out(self._pool)
        except RedisConnectionError as exc:
            raise NotSent(str(exc)) from exc
        try:
            return await round_trip(connection, commands)
        finally:
            await self._pool.release(connection)

    async def disconnect(self) -> None:
        """Close every connection of the pool, in use or not (see
        :meth:`KeptConnections.disconnect`)."""
        await self._pool.disconnect(inuse_connections=True)

    async def abandon(self) -> None:
        """Nothing of its own to forget: the connections belong to the client's pool,
        which the transport resets."""

    async def aclose(self) -> None:
        """Send nothing more; the connections themselves belong to the client's pool."""
        self._closed = True


async def send_with_scripts(
    send: Send, scripts: Mapping[str, str], commands: Sequence[Command]
) -> list[Any]:
    """``send(commands)``; an ``EVALSHA`` of one of ``scripts`` (by SHA1) that the server
    does not know (``NOSCRIPT``: a restarted server, ``SCRIPT FLUSH``) is sent once more
    after ``SCRIPT LOAD``, in one more round trip. Safe for writes: a ``NOSCRIPT`` reply
    means the script did not run."""
    replies = await send(commands)
    missing = [
        i
        for i, reply in enumerate(replies)
        if isinstance(reply, NoScriptError) and str(commands[i][1]) in scripts
    ]
    if missing:
        shas = dict.fromkeys(str(commands[i][1]) for i in missing)
        loads: list[Command] = [("SCRIPT", "LOAD", scripts[sha]) for sha in shas]
        again = await send([*loads, *(commands[i] for i in missing)])
        for i, reply in zip(missing, again[len(loads) :], strict=True):
            replies[i] = reply
    return replies


class AutoPipeline:
    """Coalesce concurrent calls into shared round trips made by ``send``.

    A failed round trip fails every call in it with the same error and is never sent
    again here: a caller whose command may be repeated safely (a read) sends it again
    itself. ``timeout`` bounds each round trip, and the time a call may wait in the
    queue before it is sent.
    """

    def __init__(
        self,
        send: Send,
        *,
        timeout: float | None,
        max_batch: int = 512,
        max_in_flight: int = 2,
    ) -> None:
        self._send_commands = send
        self._timeout = timeout
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: deque[_Call] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._starting = 0  # workers created that have not yet taken their first batch
        self._active = 0  # workers not yet finished
        self._in_flight = 0  # round trips under way, direct or batched
        self._closed = False

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` together, in one round trip with the others in flight.

        Their replies in order, a command's error reply in its place; a lost connection
        or a timeout is raised.
        """
        if self._closed:
            raise RedisConnectionError("the pipeline is closed")
        if self._in_flight == 0 and not self._queue:
            return await self._direct(commands)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, future, loop.time()))
        # A starting worker takes the whole queue; a busy one looks again when done.
        if self._starting == 0 and self._active < self._max_in_flight:
            self._starting += 1
            self._active += 1
            worker = loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        # A cancelled caller cancels its future: a worker skips or ignores a done future.
        return await future

    async def _direct(self, commands: Sequence[Command]) -> list[Any]:
        """Nothing in flight: send at once, alone, rather than wait a loop iteration;
        the calls made meanwhile queue up behind it."""
        self._in_flight += 1
        try:
            return await self._bounded(self._send_commands(commands))
        finally:
            self._in_flight -= 1

    async def _bounded(self, awaitable: Awaitable[list[Any]]) -> list[Any]:
        """``awaitable`` within ``timeout``, else ``asyncio.TimeoutError``.

        One timer per round trip, so it is kept lean: ``asyncio.timeout`` costs about three
        times as much (its own object, rescheduling, state checks).
        """
        if self._timeout is None:
            return await awaitable
        if sys.version_info < (3, 11):  # pragma: no cover - no Task.uncancel before 3.11
            return await asyncio.wait_for(awaitable, self._timeout)
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self._timeout, expire)
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Ours, unless the task was also cancelled from outside meanwhile.
            if expired and task.uncancel() <= cancelling:
                raise asyncio.TimeoutError("no reply within the timeout") from None
            raise
        finally:
            timer.cancel()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _work(self) -> None:
        # The counters change with no await between the queue check and the exit, so
        # a call queued at any point is either seen here or starts a new worker.
        self._starting -= 1
        try:
            while self._queue:
                batch = self._take()
                if batch:
                    self._in_flight += 1
                    try:
                        await self._send(batch)
                    finally:
                        self._in_flight -= 1
        finally:
            self._active -= 1

    def _take(self) -> list[_Call]:
        """Calls of up to ``max_batch`` commands in all; expired ones fail here, unsent."""
        batch: list[_Call] = []
        size = 0
        # Calls queued before this are past their timeout: they fail without being sent.
        expired = -1.0 if self._timeout is None else self._now() - self._timeout
        while self._queue and (not batch or size + len(self._queue[0][0]) <= self._max_batch):
            call = self._queue.popleft()
            future = call[1]
            if future.done():
                continue  # the caller was cancelled
            if call[2] <= expired:
                future.set_exception(asyncio.TimeoutError("queued past the timeout"))
                continue
            batch.append(call)
            size += len(call[0])
        return batch

    async def _send(self, batch: list[_Call]) -> None:
        commands = [command for call in batch for command in call[0]]
        try:
            replies = await self._bounded(self._send_commands(commands))
        except Exception as exc:  # the connection failed or timed out: the whole batch
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # the worker itself was cancelled (aclose)
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(RedisConnectionError("the pipeline was closed"))
            raise
        start = 0
        for call_commands, future, _ in batch:
            end = start + len(call_commands)
            if not future.done():
                future.set_result(replies[start:end])
            start = end

    async def aclose(self) -> None:
        """Stop the workers; callers still waiting get a connection error."""
        self._closed = True
        for worker in list(self._workers):
            worker.cancel()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:
            future = self._queue.popleft()[1]
            if not future.done():
                future.set_exception(RedisConnectionError("the pipeline was closed"))
