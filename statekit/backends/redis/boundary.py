"""Where redis-py's exceptions become statekit's: the one boundary of the Redis backend.

Every operation of :class:`~statekit.backends.redis.RedisBackend` runs inside its
:class:`ErrorBoundary` (``with self._errors:``), which

* refuses any call once the backend is closed (:class:`~statekit.errors.StoreClosedError`),
  and turns whatever a call under way meets as the connections close under it (a lost
  connection, a closed pipeline, redis-py's ``AttributeError`` on a connection it has
  just reset) into that same error;
* reports a setting the server refuses (a database it does not have, credentials it does
  not accept) as :class:`~statekit.errors.ConfigurationError`: retrying cannot help;
* maps timeouts, lost connections and every other Redis error to the
  :class:`~statekit.errors.StateBackendError` family.

:class:`ConnectHook` is the connection set-up of the clients statekit builds: once the
backend is closed it opens nothing more (redis-py's ``Retry`` would otherwise connect
again under a call that was under way), and when the server refuses the URL's database
it asks the server (``CONFIG GET databases``, on the same connection, still on database
0) how many it has, for the message.
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection

from statekit import logs
from statekit.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    StateBackendError,
    StatekitError,
    StoreClosedError,
)

__all__ = ["ConnectHook", "ErrorBoundary", "MissingDatabase", "configuration_problem", "server_of"]

_NO_SUCH_DB = "DB index is out of range"


class MissingDatabase(redis_errors.ResponseError):
    """The server refused ``SELECT db``; ``databases`` is how many it has (``None``: it
    would not say)."""

    def __init__(self, db: int, databases: int | None) -> None:
        super().__init__(_NO_SUCH_DB)
        self.db = db
        self.databases = databases


class Closed(redis_errors.RedisError):
    """The backend was closed: no connection opens any more. Not a ``ConnectionError``,
    which redis-py's ``Retry`` answers by connecting again."""


class ConnectHook:
    """The ``redis_connect_func`` of a client statekit builds (one per backend)."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        #: Set by the transport's ``aclose``.
        self.closed = False

    async def on_connect(self, connection: AbstractConnection) -> None:
        """redis-py's own set-up (``HELLO``/``AUTH``, ``CLIENT SETNAME``, ``SELECT``),
        refused once closed, raising :class:`MissingDatabase` with the server's database
        count when the database does not exist."""
        if self.closed:
            raise Closed("the backend was closed with aclose()")
        try:
            await connection.on_connect()
        except redis_errors.ResponseError as exc:
            if _NO_SUCH_DB not in str(exc):
                raise
            db = int(getattr(connection, "db", 0))
            raise MissingDatabase(db, await _database_count(connection)) from exc


async def _database_count(connection: AbstractConnection) -> int | None:
    """``CONFIG GET databases`` on ``connection``; ``None`` where ``CONFIG`` is disabled,
    renamed or not permitted to this user."""
    try:
        await connection.send_command("CONFIG", "GET", "databases", check_health=False)
        reply: Any = await connection.read_response()
    except (redis_errors.RedisError, OSError):
        return None
    values = list(reply.values()) if isinstance(reply, dict) else list(reply or [])[1:]
    try:
        return int(values[0])
    except (IndexError, TypeError, ValueError):
        return None


def configuration_problem(exc: BaseException) -> ConfigurationError | None:
    """The :class:`ConfigurationError` a refused setting means, if ``exc`` (or what it
    wraps: a connection that could not be opened) is one; else ``None``."""
    for error in (exc, exc.__cause__):
        if isinstance(error, MissingDatabase):
            has = (
                "the server has fewer databases"
                if error.databases is None
                else f"the server has {error.databases} databases (0 to {error.databases - 1})"
            )
            return ConfigurationError(
                f"Redis database {error.db} does not exist: {has}; "
                "fix the database number in the URL (or raise 'databases' in redis.conf)"
            )
        if isinstance(error, redis_errors.ResponseError) and _NO_SUCH_DB in str(error):
            return ConfigurationError(
                "The Redis database in the URL does not exist: the server has fewer databases"
            )
        # Without credentials, a large first command gets "Protocol error: unauthenticated
        # multibulk length" (Redis refuses big requests before AUTH) instead of NOAUTH.
        unauthenticated = isinstance(error, redis_errors.ResponseError) and (
            "unauthenticated" in str(error)
        )
        if unauthenticated or isinstance(error, redis_errors.AuthenticationError):
            # Redis's own text (WRONGPASS, NOAUTH, "called without any password
            # configured") never quotes the password.
            return ConfigurationError(
                f"Redis refused the credentials: {error}; check the user and password in the URL"
            )
    return None


class ErrorBoundary:
    """Translate redis-py exceptions into statekit's error tree, and refuse calls once
    :attr:`closed` (set by the backend's ``aclose``).

    A class rather than a ``@contextmanager`` generator: it wraps every operation, and
    entering and leaving a generator costs several times as much.
    """

    __slots__ = ("address", "closed")

    def __init__(self, address: str | None = None) -> None:
        self.closed = False
        #: ``host:port`` named by fault records (never the URL: it can hold a password).
        self.address = address

    def __enter__(self) -> None:
        if self.closed:
            raise StoreClosedError("This RedisBackend was closed with aclose()")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, Exception):
            return  # success, or a cancellation: the caller's own
        if self.closed:
            raise StoreClosedError(
                "This RedisBackend was closed with aclose() while the call was under way"
            ) from exc
        error = _translated(exc)
        if error is not None:
            error.__cause__ = exc
            # The operation is the backend method holding the boundary: looked up only on
            # this path, so a successful call pays nothing for it.
            operation = sys._getframe(1).f_code.co_name
            logs.backend_fault(logs.REDIS_LOG, error, operation, self.address)
            raise error from exc


def server_of(client: Any) -> str | None:
    """``host:port`` of a redis-py client for fault records: a standalone client's
    connection settings, a cluster's default node; ``None`` when neither says (a
    Sentinel-managed or socket client)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if isinstance(kwargs, dict) and kwargs.get("host"):
        return logs.server_address(kwargs.get("host"), kwargs.get("port"))
    default_node = getattr(client, "get_default_node", None)
    node = default_node() if callable(default_node) else None
    return logs.server_address(getattr(node, "host", None), getattr(node, "port", None))


def _translated(exc: Exception) -> StatekitError | None:
    """The statekit error for a redis-py one, ``None`` for anything else (a bug, or a
    statekit error already translated by an inner boundary)."""
    problem = configuration_problem(exc)
    if problem is not None:
        return problem
    if isinstance(exc, (redis_errors.TimeoutError, asyncio.TimeoutError)):
        return BackendTimeoutError(f"Redis did not answer in time: {exc}")
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.ClusterDownError)):
        return BackendUnavailableError(f"Redis is unavailable: {exc}")
    if isinstance(exc, (redis_errors.RedisError, redis_errors.RedisClusterException)):
        return StateBackendError(f"Redis error: {exc}")
    return None
