"""Statements on the driver's own connection, checked out of SQLAlchemy's pool.

The pool stays SQLAlchemy's (its size, timeout, pre-ping, recycling and invalidation
apply as for any other use of the engine), with one addition: while operations queue
for a connection, one that ends hands its connection straight to the next (see
:class:`Connections`). The execution skips SQLAlchemy's ``Connection``: asyncpg runs the
SQL as a prepared statement from its own cache, in one round trip, and aiosqlite runs it
with one hand-off to its worker thread instead of four (cursor, execute, fetch, close).
SQLAlchemy's cursor-execution events therefore do not see these statements. Call these
functions inside ``greenlet_spawn``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool, PoolProxiedConnection
from sqlalchemy.util import await_only

# aiosqlite's messages for a connection that is gone (SQLAlchemy maps them the same way).
_CLOSED_MESSAGES = ("no active connection", "connection closed")


class ConnectionLost(Exception):
    """The connection died during the statement (its cause says how); the pool has
    discarded it together with every connection opened before the failure."""


class Connections:
    """Where an operation gets its connection: from the pool, or straight from the
    operation that just ended when others are queued for one (``queued()``).

    SQLAlchemy's pool keeps ``pool_size`` idle connections and closes any other that is
    returned. Replies arrive in bursts, so under a load above ``pool_size`` a burst of
    returns would close the overflow connections that the queued operations then open
    again: a new connection every few operations. Handing a connection over skips the
    pool's checkin and checkout (and its pre-ping: the connection has just worked).
    """

    def __init__(self, engine: Engine, queued: Callable[[], bool], close_timeout: float) -> None:
        self.engine = engine
        self._queued = queued
        self._close_timeout = close_timeout
        self._parked: list[PoolProxiedConnection] = []
        #: Connections of cancelled statements being closed (see :meth:`discard`).
        self._closing: set[asyncio.Task[None]] = set()
        #: Set when the backend closes: a connection that comes back is closed, not
        #: pooled (the pool may be disposed already).
        self.closed = False

    @property
    def parked(self) -> bool:
        """Whether a handed-over connection waits for an operation."""
        return bool(self._parked)

    def take(self) -> PoolProxiedConnection:
        if self._parked:
            return self._parked.pop()
        return self.engine.pool.connect()

    def give_back(self, fairy: PoolProxiedConnection) -> None:
        if self.closed:
            fairy.invalidate()
        elif self._queued() and fairy.is_valid:
            self._parked.append(fairy)
            return
        fairy.close()
        self.release()

    def release(self) -> None:
        """Return every handed-over connection nobody took to the pool."""
        while self._parked:
            self._parked.pop().close()

    def adopt(self, other: Connections) -> None:
        """Take over ``other``'s handed-over connections (the backend moved to another
        event loop, and these connections work on any)."""
        self._parked.extend(other._parked)
        other._parked.clear()

    def discard(self, fairy: PoolProxiedConnection, error: BaseException) -> None:
        """Close ``fairy``'s connection, whose statement was cancelled, and only then give
        its place in the pool back.

        On PostgreSQL the server runs the cancelled statement on until it notices the
        cancel request, and its backend process holds a connection slot until it has
        ended: a connection merely dropped on the client's side would let the pool open a
        replacement while the server still holds the old one (more connections than
        the pool's size). asyncpg's graceful close waits for the cancelled statement's
        end and then for the server to drop the connection, which it does after
        removing the backend from ``pg_stat_activity``; until then the connection stays
        checked out, counted against the pool's size. The close runs in a task of its
        own, which the caller's cancellation does not reach, bounded by the timeout.
        """
        loop = asyncio.get_running_loop()
        if self.engine.dialect.name != "postgresql":
            # aiosqlite: the statement runs to its end on the connection's thread anyway.
            loop.call_soon(_discard, fairy, error)
            return
        task = loop.create_task(_close_then_discard(fairy, error, self._close_timeout))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def settle(self) -> None:
        """Wait until every connection being discarded is closed (each bounded by the
        timeout)."""
        if self._closing:
            await asyncio.wait(set(self._closing))

    def abandon(self) -> None:
        """Return the handed-over connections to their pool without any I/O: their event
        loop is gone, so they can neither be used nor closed from this one."""
        while self._parked:
            self._parked.pop().close()  # no transaction is open: a check-in, no I/O


def run(connections: Connections, sql: str, arguments: Sequence[Any]) -> Sequence[Any]:
    """Run one statement on its own and return its rows (possibly none).

    No transaction: asyncpg runs it outside one; sqlite3 runs it in autocommit mode or,
    on a connection in sqlite3's legacy transaction mode (a host's engine), commits the
    transaction the write opened.
    """
    with checked_out(connections) as driver:
        if connections.engine.dialect.name == "postgresql":
            return await_only(driver.fetch(sql, *arguments))
        rows: Sequence[Any] = await_only(driver.execute_fetchall(sql, arguments))
        if driver.in_transaction:
            await_only(driver.commit())
        return rows


def run_many(connections: Connections, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run one statement once per row, in order, all or nothing."""
    with checked_out(connections) as driver:
        if connections.engine.dialect.name == "postgresql":
            # Atomic (asyncpg wraps it in an implicit transaction) and one round trip.
            await_only(driver.executemany(sql, rows))
            return
        if not driver.in_transaction:
            await_only(driver.execute_fetchall("BEGIN", ()))
        try:
            await_only(driver.executemany(sql, rows))
            await_only(driver.commit())
        except Exception:
            await_only(driver.rollback())
            raise


class Session:
    """The statements of one :func:`run_program` call, on one driver connection."""

    def __init__(self, driver: Any, postgres: bool) -> None:
        self._driver = driver
        self._postgres = postgres

    def fetch(self, sql: str, arguments: Sequence[Any]) -> Sequence[Any]:
        """Run one statement and return its rows (possibly none)."""
        if self._postgres:
            return await_only(self._driver.fetch(sql, *arguments))
        rows: Sequence[Any] = await_only(self._driver.execute_fetchall(sql, arguments))
        return rows

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement once per row, in order (one round trip on PostgreSQL); how
        many rows SQLite says it changed (-1 on PostgreSQL, which does not say)."""
        if self._postgres:
            await_only(self._driver.executemany(sql, rows))
            return -1
        cursor = await_only(self._driver.executemany(sql, rows))
        return int(cursor.rowcount)


#: What :func:`run_program` runs: statements on a :class:`Session`, returning a result.
Program = Callable[[Session], Any]


def run_program(connections: Connections, sql: str, program: tuple[Program, bool]) -> Any:
    """Run ``program`` (a :data:`Program` and whether it needs a transaction) on one
    connection and return what it returns (``sql`` is unused: the program has its own).

    In a transaction it is all or nothing: an exception it raises (a version conflict)
    rolls everything back. SQLite's transaction is ``BEGIN IMMEDIATE``: it takes the
    write lock first, so it never fails on a lock it would have to upgrade. Without one,
    each statement stands alone (sqlite3's legacy mode: committed at the end).
    """
    run, transaction = program
    postgres = connections.engine.dialect.name == "postgresql"
    with checked_out(connections) as driver:
        session = Session(driver, postgres)
        if not transaction:
            result = run(session)
            if not postgres and driver.in_transaction:
                await_only(driver.commit())
            return result
        if postgres:
            tx = driver.transaction()
            await_only(tx.start())
        elif not driver.in_transaction:
            await_only(driver.execute_fetchall("BEGIN IMMEDIATE", ()))
        try:
            result = run(session)
        except Exception:
            await_only(tx.rollback() if postgres else driver.rollback())
            raise
        await_only(tx.commit() if postgres else driver.commit())
        return result


@contextlib.contextmanager
def checked_out(connections: Connections) -> Iterator[Any]:
    """asyncpg's or aiosqlite's connection of a pooled connection, for one use."""
    engine = connections.engine
    fairy = connections.take()
    try:
        yield fairy.driver_connection
    except Exception as error:
        if _is_lost(engine, fairy.dbapi_connection, error):
            discard_with_older(engine.pool, fairy, error)
            fairy.close()
            connections.release()
            raise ConnectionLost(str(error)) from error
        fairy.close()
        raise
    except BaseException as error:
        # Cancelled mid-statement: the connection's state is unknown, never reuse it.
        # Closed from the event loop rather than here: in this greenlet SQLAlchemy
        # first tries a graceful close in a task of its own, which a second cancellation
        # interrupts, leaving that task waiting forever on aiosqlite's stopped thread.
        connections.discard(fairy, error)
        raise
    connections.give_back(fairy)


async def _close_then_discard(
    fairy: PoolProxiedConnection, error: BaseException, timeout: float
) -> None:
    """Close asyncpg's connection gracefully (at most ``timeout`` seconds), then give
    ``fairy`` back to the pool, invalidated; cancelled (the loop shuts down), at once."""
    connection = fairy.driver_connection
    try:
        # A close that fails or times out has aborted the connection (asyncpg's close).
        with contextlib.suppress(Exception):
            if connection is not None:
                await asyncio.wait_for(connection.close(), timeout)
    finally:
        _discard(fairy, error)


def _discard(fairy: PoolProxiedConnection, error: BaseException) -> None:
    """Terminate ``fairy``'s connection outside any greenlet: SQLAlchemy then closes it
    at once (asyncpg: the socket; aiosqlite: its thread stops after the statement under
    way), with no task left behind."""
    fairy.invalidate(error)
    fairy.close()


def discard_with_older(pool: Pool, fairy: PoolProxiedConnection, error: Exception) -> None:
    """Drop ``fairy``'s connection and have ``pool`` replace every connection opened before
    it on checkout: what SQLAlchemy does itself on a disconnect (they likely died together).

    The one use of a private SQLAlchemy API (``Pool._invalidate``, SQLAlchemy 2.0 and 2.1);
    ``tests/test_sql_backend.py`` pins it to the versions ``pyproject.toml`` allows.
    """
    pool._invalidate(fairy, error)


def _is_lost(engine: Engine, dbapi_connection: Any, error: Exception) -> bool:
    if isinstance(error, ValueError) and str(error).lower() in _CLOSED_MESSAGES:
        return True
    # asyncpg: whether the connection is closed; aiosqlite: sqlite3's closed-database errors.
    return bool(engine.dialect.is_disconnect(error, dbapi_connection, None))  # type: ignore[arg-type]
