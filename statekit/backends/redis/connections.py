"""How commands reach one server (standalone or a Sentinel's primary): round trips on
connections.

The standalone transport sends its commands through :func:`round_trip`, on a connection
of the client's pool (:class:`PooledConnections`) or kept by the auto-pipeline
(:class:`KeptConnections`), never through redis-py's ``execute_command`` or its
pipelines: their ``Retry`` sends a command again when its reply is lost, so a write the
server had already applied would be applied twice (a version moved by two), or a
conditional write would report a conflict with itself. Here a connection's ``Retry`` only
ever retries *opening* it, before anything is sent; whether a command whose reply was
lost may be sent again is decided by the transport (reads may, writes never).

Coalescing concurrent calls into shared round trips is
:class:`~statekit.backends.redis.pipeline.AutoPipeline`'s, over :data:`Send`.

redis-py's private API is used in two places only, each one named function with a test
pinned to the supported redis-py versions: :func:`usable` (``Connection._reader``) and
:func:`checkout_needs_a_command_name` (the signature of ``get_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

__all__ = [
    "DEADLINE_PASSED",
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

#: The message of the cancellation by which a round trip's own deadline interrupts it
#: (:meth:`.pipeline.AutoPipeline._bounded`): a timeout, which nothing holds back.
DEADLINE_PASSED = "statekit: no reply within the timeout"
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
    the connection staying in step. A cancellation once the commands are sent is held
    back until their replies have been read (within the connection's ``socket_timeout``
    or the round trip's deadline, :data:`DEADLINE_PASSED`): whatever the cancelled caller
    sends next, maybe on another connection, then reaches the server after them. Any
    other failure (a lost connection, a timeout, a cancellation mid-write) leaves the
    connection's state unknown: it is closed, then the error raised; the connection
    reconnects on its next use.
    """
    try:
        await connection.send_packed_command(_pack(connection, commands), check_health=False)
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    replies: list[Any] = []
    try:
        await _read_replies(connection, len(commands), replies)
    except asyncio.CancelledError as cancelled:
        if cancelled.args == (DEADLINE_PASSED,):
            await connection.disconnect(nowait=True)
        else:
            await _finish_reading(connection, len(commands), replies)
        raise
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    return replies


async def _read_replies(connection: AbstractConnection, count: int, replies: list[Any]) -> None:
    """Read replies into ``replies`` until it holds ``count``. An interrupted read leaves
    the parser able to go on (redis-py keeps the bytes it read), so it is not closed."""
    while len(replies) < count:
        try:
            replies.append(await connection.read_response(disconnect_on_error=False))
        except ResponseError as error:
            replies.append(error)


async def _finish_reading(connection: AbstractConnection, count: int, replies: list[Any]) -> None:
    """Read the rest of the replies of a cancelled round trip in a task that further
    cancellations do not reach, until the round trip's deadline passes; close the
    connection if that fails."""
    rest = asyncio.ensure_future(_read_replies(connection, count, replies))
    while not rest.done():
        try:
            await asyncio.wait((rest,))
        except asyncio.CancelledError as again:
            if again.args == (DEADLINE_PASSED,):
                rest.cancel()  # done at the next turn of the loop
    if rest.cancelled() or rest.exception() is not None:
        await connection.disconnect(nowait=True)


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
