"""How an operation of the SQL backend reaches a connection.

SQLAlchemy's async pool hands a returned connection to whichever task asks next, so with
more tasks than connections a waiter can starve past its timeout. A FIFO gate of the
pool's size in front of it serves callers in order instead. Single statements and
batches then run on the driver's own connection (see :mod:`.driver`); blocks that need
SQLAlchemy's ``Connection`` (the export, the DDL, ``describe``) hold a place of the same
gate while they use the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from statekit.backends.gate import FifoGate
from statekit.backends.sql import driver
from statekit.backends.sql.faults import TRANSLATED, driver_errors, translate

#: ``run(connections, sql, arguments)``: :func:`.driver.run` or :func:`.driver.run_many`.
DriverRun = Callable[[driver.Connections, str, Any], Any]


class Gateway:
    """Admits ``size`` operations at once (``None``: no gate, the pool's own order), each
    waiting at most ``timeout`` seconds for its turn."""

    def __init__(self, engine: AsyncEngine, size: int | None, timeout: float) -> None:
        self._gate = None if size is None else FifoGate(size, timeout, "database connection")
        # Driver operations waiting for a place: they take the connections handed over.
        self._queued = 0
        self._connections = driver.Connections(engine.sync_engine, lambda: self._queued > 0)
        self._driver_errors = TRANSLATED + driver_errors(engine.dialect.name)

    async def _enter(self, *, driver_operation: bool = False) -> None:
        """Take one of the gate's places (FIFO), waiting at most ``timeout``."""
        if self._gate is None:
            return
        if not driver_operation:
            await self._gate.acquire()
            return
        # Counted while it waits (a free place is taken without suspending).
        self._queued += 1
        try:
            await self._gate.acquire()
        finally:
            self._queued -= 1

    def _leave(self) -> None:
        if self._gate is not None:
            self._gate.release()

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Hold one of the gate's places for a block that uses the engine itself."""
        await self._enter()
        try:
            if self._connections.parked:
                # Left by a queued operation that gave up: the block needs the pool's.
                await greenlet_spawn(self._connections.release)
            yield
        finally:
            self._leave()

    async def run(self, run: DriverRun, sql: str, arguments: Any, what: str, *, read: bool) -> Any:
        """``run(connections, sql, arguments)`` on a driver connection, in its turn.

        A read that finds its connection dead is retried once: the failure has discarded
        the pool's stale connections, so the retry runs on a fresh one. Writes are not
        retried (the lost reply may belong to an applied write). Failures are raised as
        statekit errors saying ``what`` failed.
        """
        for attempt in (1, 2):
            await self._enter(driver_operation=True)
            try:
                # One greenlet for checkout, execution and checkin.
                return await greenlet_spawn(run, self._connections, sql, arguments)
            except driver.ConnectionLost as lost:
                if read and attempt == 1:
                    continue
                cause = lost.__cause__ or lost
                raise translate(cause, what, lost=True) from cause
            except self._driver_errors as exc:
                raise translate(exc, what) from exc
            finally:
                self._leave()
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Return the connections handed over that nobody took to the pool."""
        await greenlet_spawn(self._connections.release)
