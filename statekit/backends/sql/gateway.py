"""How an operation of the SQL backend reaches a connection, and the backend's lifetime.

SQLAlchemy's async pool hands a returned connection to whichever task asks next, so with
more tasks than connections a waiter can starve past its timeout. A FIFO gate of the
pool's size in front of it serves callers in order instead. Single statements and
batches then run on the driver's own connection (see :mod:`.driver`); blocks that need
SQLAlchemy's ``Connection`` (the export, the DDL, ``describe``) hold a place of the same
gate while they use the engine.

The gate, the schema lock and the connections handed over belong to one event loop. A
backend used from another loop (a module-level store across two ``asyncio.run()``
calls) moves to it on that loop's first call: it starts a new gate and, on PostgreSQL,
a new pool (asyncpg's connections only work on the loop that opened them; aiosqlite's
work on any loop and are kept); on PostgreSQL the old loop's connections are closed
as that loop shuts down (see :mod:`.loops`). Two loops running at once are refused by
name. After
:meth:`Gateway.close` every call raises :class:`~statekit.errors.StoreClosedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection, StaticPool
from sqlalchemy.util import greenlet_spawn

from statekit import logs
from statekit.backends.gate import FifoGate
from statekit.backends.sql import driver
from statekit.backends.sql.faults import TRANSLATED, aborted_whole, driver_errors, translate
from statekit.backends.sql.holdback import HoldBack, to_the_end
from statekit.backends.sql.loops import LoopEnd
from statekit.errors import StateBackendError, StoreClosedError
from statekit.logs import server_address
from statekit.telemetry.recorder import Recorder

#: ``run(connections, sql, arguments)``: :func:`.driver.run` or :func:`.driver.run_many`.
DriverRun = Callable[[driver.Connections, str, Any], Any]

CLOSED_MESSAGE = "the SQL backend is closed (aclose() was called)"
#: How many times an atomic operation the server aborted whole is run again.
ROLLBACK_RETRIES = 3

_T = TypeVar("_T")


class _Turns:
    """What one event loop's operations share: the gate and who is inside it."""

    def __init__(
        self,
        engine: AsyncEngine,
        size: int | None,
        timeout: float,
        backlog: Callable[[], bool],
        keep_idle: int,
    ) -> None:
        self.gate = None if size is None else FifoGate(size, timeout, "database connection")
        # Driver operations waiting for a place (or, ``backlog``, calls queued for the
        # next coalesced batch): they take the connections handed over.
        self.queued = 0
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.schema_lock = asyncio.Lock()
        self.busy = lambda: self.active > 0
        self.connections = driver.Connections(
            engine.sync_engine,
            lambda: self.queued > 0 or backlog(),
            close_timeout=timeout,
            keep_idle=keep_idle,
        )


class Gateway:
    """Admits ``size`` operations at once (``None``: no gate, the pool's own order), each
    waiting at most ``timeout`` seconds for its turn.

    ``keep_idle`` (SQLite files: the pool's size): up to that many connections that come
    back stay checked out while calls follow each other without the loop turning (see
    :meth:`.driver.Connections.return_soon`), and a single statement on one runs in its
    caller's task (see :meth:`_direct`)."""

    def __init__(
        self, engine: AsyncEngine, size: int | None, timeout: float, *, keep_idle: int = 0
    ) -> None:
        self._engine = engine
        # For fault records: host and port only, never the URL (it can hold a password).
        self._address = server_address(engine.url.host, engine.url.port)
        self._size = size
        self._timeout = timeout
        self._driver_errors = TRANSLATED + driver_errors(engine.dialect.name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._keep_idle = keep_idle
        #: Whether calls wait for a connection outside the gate (a coalescer's queue).
        self.backlog: Callable[[], bool] = lambda: False
        self._turns = _Turns(engine, size, timeout, self._backlog, keep_idle)
        #: Gate waits and places in use, for :mod:`statekit.telemetry`.
        self.recorder = Recorder()
        self.recorder.watch(self._turns.gate)
        self.closed = False
        # aiosqlite runs a statement to its end in its thread whatever becomes of the
        # caller; letting the operation finish there too (checkin included) keeps
        # cancellation out of SQLAlchemy's connection handling, where a second one
        # strands a close task of its own (see :mod:`.holdback`).
        self._runs_to_the_end = engine.dialect.name == "sqlite"
        # asyncpg's connections work on their own loop only; aiosqlite's on any.
        self._loop_bound_connections = engine.dialect.name == "postgresql" and not isinstance(
            engine.pool, StaticPool
        )
        self._loop_end: LoopEnd | None = None

    def _backlog(self) -> bool:
        return self.backlog()

    def _bound(self) -> _Turns:
        """This loop's turns, moving the backend to the running loop if it changed."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return self._turns
        previous = self._loop
        if previous is not None and previous.is_running():
            raise StateBackendError(
                "the SQL backend is in use on another running event loop (thread): "
                "use one backend per event loop"
            )
        self._loop = loop
        if self._loop_end is not None:
            self._loop_end.cancel()
        if self._loop_bound_connections:
            self._loop_end = LoopEnd(self._release_loop)
        if previous is None:
            return self._turns
        stale = self._turns
        self._turns = _Turns(
            self._engine, self._size, self._timeout, self._backlog, self._keep_idle
        )
        self.recorder.watch(self._turns.gate)
        if self._loop_bound_connections:
            # Connections the old loop's shutdown did not close (a loop closed by hand)
            # cannot even be closed from this loop: a new pool replaces them (SQLAlchemy's
            # advice) and they are dropped with the old one.
            stale.connections.abandon()
            self._engine.sync_engine.dispose(close=False)
        else:
            self._turns.connections.adopt(stale.connections)
        return self._turns

    async def _release_loop(self) -> None:
        """Close the pool's connections on the loop that opened them, as it shuts down."""
        if not self.closed:
            await greenlet_spawn(self._turns.connections.release)
            await self._engine.dispose()

    def schema_lock(self) -> asyncio.Lock:
        """The lock that makes schema creation happen once, for the running loop."""
        return self._bound().schema_lock

    async def _enter(self, *, driver_operation: bool = False, awaited: bool = True) -> _Turns:
        """Take one of the gate's places (FIFO), waiting at most ``timeout``; ``awaited``:
        :meth:`close` waits for the holder to leave."""
        if self.closed:
            raise StoreClosedError(CLOSED_MESSAGE)
        turns = self._bound()
        if turns.gate is not None:
            # Driver operations are counted while they wait (a free place is taken
            # without suspending).
            turns.queued += driver_operation
            try:
                await turns.gate.acquire()
            finally:
                turns.queued -= driver_operation
            if self.closed:  # closed while this call waited for its turn
                turns.gate.release()
                raise StoreClosedError(CLOSED_MESSAGE)
        if awaited:
            turns.active += 1
            turns.idle.clear()
        return turns

    @property
    def address(self) -> str | None:
        """The server's ``host:port`` for fault records (``None`` on SQLite)."""
        return self._address

    @staticmethod
    def _leave(turns: _Turns, *, awaited: bool = True) -> None:
        if awaited:
            turns.active -= 1
            if not turns.active:
                turns.idle.set()
                turns.connections.return_soon(turns.busy)
        if turns.gate is not None:
            turns.gate.release()

    @contextlib.asynccontextmanager
    async def guard(self, *, streaming: bool = False) -> AsyncIterator[None]:
        """Hold one of the gate's places for a block that uses the engine itself.

        ``streaming``: the block yields to its caller while it holds the place (the
        export), so :meth:`close` does not wait for it; the block checks
        :attr:`closed` itself whenever it resumes."""
        turns = await self._enter(awaited=not streaming)
        try:
            if turns.connections.parked:
                # Left by a queued operation that gave up: the block needs the pool's.
                await greenlet_spawn(turns.connections.release)
            yield
        finally:
            self._leave(turns, awaited=not streaming)

    async def run(
        self,
        run: DriverRun,
        sql: str,
        arguments: Any,
        what: str,
        *,
        read: bool,
        atomic: bool = True,
    ) -> Any:
        """``run(connections, sql, arguments)`` on a driver connection, in its turn.

        A read that finds its connection dead is retried once: the failure has discarded
        the pool's stale connections, so the retry runs on a fresh one. Writes are not
        retried (the lost reply may belong to an applied write). ``atomic`` (one statement
        or one transaction) is run again, up to :data:`ROLLBACK_RETRIES` times, when the
        server aborted it to break a deadlock or a serialization conflict: it was then
        rolled back whole, so nothing of it applied and its outcome is known. Failures
        are raised as statekit errors saying ``what`` failed.
        """
        resent = rolled_back = 0
        while True:
            turns = await self._enter(driver_operation=True)
            try:
                if self._runs_to_the_end:
                    fairy = turns.connections.idle() if run is driver.run else None
                    if fairy is not None:
                        return await self._direct(turns, fairy, sql, arguments)
                    return await to_the_end(self._operate(turns, run, sql, arguments))
                return await self._operate(turns, run, sql, arguments)
            except driver.ConnectionLost as lost:
                if read and not resent:
                    resent += 1
                    logs.backend_retry(logs.SQL_LOG, lost.__cause__ or lost, what, self._address)
                    continue
                cause = lost.__cause__ or lost
                raise translate(cause, what, lost=True, address=self._address) from cause
            except self._driver_errors as exc:
                if atomic and rolled_back < ROLLBACK_RETRIES and aborted_whole(exc):
                    rolled_back += 1
                    logs.backend_retry(logs.SQL_LOG, exc, what, self._address)
                    continue
                raise translate(exc, what, address=self._address) from exc

    def on_loop(self, read: Callable[[str, Any], _T], sql: str, arguments: Any, what: str) -> _T:
        """``read(sql, arguments)`` right here, on the event loop, outside the gate
        (see :mod:`.loop_reads`): refused once closed, and on a second running loop, as
        :meth:`run` refuses; failures raised as statekit errors saying ``what`` failed."""
        if self.closed:
            raise StoreClosedError(CLOSED_MESSAGE)
        self._bound()
        try:
            return read(sql, arguments)
        except self._driver_errors as exc:
            raise translate(exc, what, address=self._address) from exc

    async def finish(self, block: Coroutine[Any, Any, _T]) -> _T:
        """Await ``block``, which uses the engine itself (inside :meth:`guard`); on SQLite
        to its end, holding a cancellation of the caller back as :meth:`run` does: the
        connection that SQLAlchemy opens for it would be terminated, and cancelled again
        its close task strands (see :mod:`.holdback`)."""
        if self._runs_to_the_end:
            return await to_the_end(block)
        return await block

    async def _operate(self, turns: _Turns, run: DriverRun, sql: str, arguments: Any) -> Any:
        try:
            # One greenlet for checkout, execution and checkin.
            return await greenlet_spawn(run, turns.connections, sql, arguments)
        finally:
            self._leave(turns)

    async def _direct(
        self, turns: _Turns, fairy: PoolProxiedConnection, sql: str, arguments: Any
    ) -> Any:
        """:func:`.driver.run` on SQLite's ``fairy`` (kept idle or handed over), in the
        caller's own task: no task, no greenlet and no pool checkout per call.

        Only aiosqlite's futures are awaited until the statement has ended (the pool is
        called in a greenlet only on a failure, or to return a connection that cannot be
        kept), so :class:`.holdback.HoldBack` holds the caller's cancellation back as
        :func:`.holdback.to_the_end` does, and raises it once the place is given back.
        """
        connections = turns.connections
        hold = HoldBack()
        try:
            rows = await self._statement(hold, connections, fairy, sql, arguments)
        except Exception:
            if hold.interrupted:
                raise asyncio.CancelledError from None
            raise
        finally:
            self._leave(turns)
        if hold.interrupted:
            raise asyncio.CancelledError
        return rows

    @staticmethod
    async def _statement(
        hold: HoldBack,
        connections: driver.Connections,
        fairy: PoolProxiedConnection,
        sql: str,
        arguments: Any,
    ) -> Any:
        connection: Any = fairy.driver_connection
        try:
            rows = await hold.run(connection.execute_fetchall(sql, arguments))
            if connection.in_transaction:  # sqlite3's legacy mode: as driver.run does
                await hold.run(connection.commit())
        except Exception as error:
            await hold.run(greenlet_spawn(driver.fail, connections, fairy, error))
            raise  # not reached: fail() raises
        except BaseException as error:  # closed mid-statement: never reuse it
            with contextlib.suppress(RuntimeError):  # no running loop left to close it on
                connections.discard(fairy, error)
            raise
        if not connections.park(fairy):
            await hold.run(greenlet_spawn(connections.give_back, fairy))
        return rows

    async def close(self) -> None:
        """Refuse every later call, let the statements under way finish (waiting at most
        ``timeout``), then return the connections handed over to the pool and wait for
        those of cancelled statements to be closed (each bounded by ``timeout``).

        Calls still waiting for their turn raise :class:`StoreClosedError` when it comes;
        a statement that outlives the wait closes its connection when it ends, so nothing
        goes back to a pool that is being disposed.
        """
        self.closed = True
        turns = self._bound()
        if self._loop_end is not None:
            self._loop_end.cancel()
        turns.connections.closed = True
        turns.connections.cancel_return()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(turns.idle.wait(), self._timeout)
        await greenlet_spawn(turns.connections.release)
        await turns.connections.settle()
