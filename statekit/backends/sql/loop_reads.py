"""SQLite reads on the event loop (``reads_on_loop=true``), opted into by the host.

aiosqlite runs every statement on its connection's worker thread: a get costs a hand-off
there and a wake-up of the loop back, tens of microseconds on a busy machine for a
statement that takes a few. With this option a point read (get, a versioned get, a
snapshot, a listing, a deadline, the scopes an erasure finds) runs instead with
:mod:`sqlite3` on the loop's own thread, on a connection of its own that can only read
(``PRAGMA query_only``).

What the host trades: the loop is blocked for each such statement, which nothing else on
the loop can interrupt. On a WAL database (statekit's files are) a reader never waits for
a writer, so a point read blocks it for microseconds; a large snapshot or listing for as
long as SQLite takes to read it, at most ``timeout`` (the statement is then interrupted
and the call raises :class:`~statekit.errors.BackendTimeoutError`). The connection never
waits for a lock (no busy timeout): a read that finds the database locked (a database not
in WAL mode, a checkpoint that needs the lock) is run on aiosqlite's thread as without the
option. Reads that refresh a deadline (a ``ttl`` on read) write, and stay on the thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from statekit.errors import BackendTimeoutError

#: How many SQLite virtual machine steps run between two looks at the deadline.
_PROGRESS_STEPS = 1000
#: sqlite3's messages for a lock it would have to wait for (the read then moves).
_LOCKED = ("database is locked", "database table is locked")


class LoopReads:
    """A read-only :mod:`sqlite3` connection to the engine's database, opened on first
    use, whose statements run on the calling thread (the event loop's)."""

    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._args: Sequence[Any] = args
        self._kwargs: dict[str, Any] = dict(kwargs)
        self._timeout = timeout
        self._deadline = 0.0
        self._connection: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection:
        # check_same_thread off: a backend moves from one loop (thread) to the next.
        kwargs = {**self._kwargs, "check_same_thread": False, "isolation_level": None}
        connection: sqlite3.Connection = sqlite3.connect(*self._args, **kwargs)
        try:
            connection.execute("PRAGMA query_only = ON")
            connection.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            connection.close()
            raise
        connection.set_progress_handler(self._overdue, _PROGRESS_STEPS)
        self._connection = connection
        return connection

    def _overdue(self) -> bool:
        return time.monotonic() > self._deadline

    def rows(self, sql: str, arguments: Sequence[Any], what: str) -> list[Any] | None:
        """The statement's rows; ``None`` when the database is locked (run it on the
        thread instead). A statement still running after ``timeout`` is interrupted:
        :class:`BackendTimeoutError`. Other failures are sqlite3's errors."""
        connection = self._connection or self._open()
        self._deadline = time.monotonic() + self._timeout
        try:
            return connection.execute(sql, arguments).fetchall()
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if message in _LOCKED:
                return None
            if message == "interrupted":
                raise BackendTimeoutError(
                    f"SQL backend failed to {what}: the read took longer than "
                    f"{self._timeout:g} s on the event loop and was interrupted"
                ) from None
            raise

    def close(self) -> None:
        """Close the connection (a later :meth:`rows` would open a new one)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
