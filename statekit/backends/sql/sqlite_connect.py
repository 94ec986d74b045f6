"""Opening an aiosqlite connection so that a failed attempt leaves no thread behind.

aiosqlite runs each connection on a worker thread. When opening the database fails (a
directory that does not exist, a file that is not a database), it queues the worker's
stop and raises at once, without waiting for it. The worker's last act is a callback
into the event loop; a short program that ends on the error (``asyncio.run`` closing
its loop) then races that thread, which dies printing ``RuntimeError: Event loop is
closed`` after the program's own error. :func:`connect` waits for the worker to end
before the error goes on, so the loop is still running when its callback arrives.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiosqlite

#: How long a failed open waits for its worker to stop (it has one queued call to run).
STOP_WAIT = 2.0
POLL_INTERVAL = 0.002


def connect(*args: Any, **kwargs: Any) -> Any:
    """What SQLAlchemy's aiosqlite dialect awaits (its ``async_creator_fn`` hook)."""
    import aiosqlite  # here: a PostgreSQL-only install has no aiosqlite

    connection = aiosqlite.connect(*args, **kwargs)
    worker = worker_thread(connection)
    # As SQLAlchemy's own connect does: a worker never holds up the interpreter's exit.
    worker.daemon = True
    return _opened(connection, worker)


async def _opened(connection: aiosqlite.Connection, worker: threading.Thread) -> Any:
    try:
        return await connection
    except BaseException:
        # The thread offers nothing to await, and joining it from another thread would
        # start the loop's executor (a thread that outlives the call): poll instead.
        deadline = time.monotonic() + STOP_WAIT
        while worker.is_alive() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(POLL_INTERVAL)
        raise


def worker_thread(connection: aiosqlite.Connection) -> threading.Thread:
    """aiosqlite's worker thread of ``connection``: the private ``_thread`` since 0.22,
    the connection itself (a ``Thread``) before. Pinned by ``tests/test_cli_console.py``."""
    if isinstance(connection, threading.Thread):
        return connection
    thread = connection._thread
    assert isinstance(thread, threading.Thread)
    return thread
