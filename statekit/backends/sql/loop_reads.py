"""SQLite reads on the event loop (``reads_on_loop``, on by default for a file).

aiosqlite runs every statement on its connection's worker thread: a get costs a hand-off
there and a wake-up of the loop back, tens of microseconds on a busy machine for a
statement that takes a few. Here a read (get, a versioned get, a snapshot, a listing, a
deadline, the scopes an erasure finds) runs instead with :mod:`sqlite3` on the loop's
own thread, on a connection of its own that can only read (``PRAGMA query_only``).

What the host trades: the loop is blocked for each such statement, which nothing else on
the loop can interrupt. On a WAL database (statekit's files are) a reader never waits for
a writer, so a point read blocks it for microseconds. A read still running after
:data:`LOOP_BUDGET` (a large snapshot or listing, a scan of a big file) is interrupted by
SQLite and run again on aiosqlite's thread, as without the option: the loop is never
blocked longer than that. The connection never waits for a lock either (no busy
timeout): a read that finds the database locked (a database not in WAL mode, a
checkpoint that needs the lock) is run on the thread too. Reads that refresh a deadline
(a ``ttl`` on read) write, and stay on the thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

#: How long a read may hold the event loop before it moves to aiosqlite's thread (s).
LOOP_BUDGET = 0.05
#: How many SQLite virtual machine steps run between two looks at the deadline.
_PROGRESS_STEPS = 1000
#: sqlite3's messages for a lock it would have to wait for and for a statement stopped
#: by :data:`LOOP_BUDGET` (the read then moves to the thread).
_MOVED = frozenset(("database is locked", "database table is locked", "interrupted"))


class LoopReads:
    """A read-only :mod:`sqlite3` connection to the engine's database, opened on first
    use, whose statements run on the calling thread (the event loop's)."""

    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._args: Sequence[Any] = args
        self._kwargs: dict[str, Any] = dict(kwargs)
        # Past ``timeout`` a call fails anyway; past the budget the thread takes the read.
        self._budget = min(timeout, LOOP_BUDGET)
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

    def rows(self, sql: str, arguments: Sequence[Any]) -> list[Any] | None:
        """The statement's rows; ``None`` when the database is locked or the statement
        ran past the loop's budget (run it on the thread instead). Other failures are
        sqlite3's errors."""
        connection = self._connection or self._open()
        self._deadline = time.monotonic() + self._budget
        try:
            return connection.execute(sql, arguments).fetchall()
        except sqlite3.OperationalError as exc:
            if str(exc) in _MOVED:
                return None
            raise

    def close(self) -> None:
        """Close the connection (a later :meth:`rows` would open a new one)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
