"""Opening an asyncpg connection so that a cancelled caller never strands the attempt.

SQLAlchemy's pool counts a connection against its size from the start of the attempt to
open it until that attempt fails. A caller cancelled mid-attempt used to cancel asyncpg's
connect: asyncpg then closes its socket and the pool frees the place at once, while the
server may already hold the session (it appears in ``pg_stat_activity`` before the
client has read its greeting) and ends it only once it reads the end of the socket; the
pool could open a replacement meanwhile. A connect cancelled during its TLS negotiation
also leaves asyncpg errors that nobody retrieves (a future's ``unexpected
connection_lost() call``, a failed ``data_received()`` call).

:func:`connect` therefore runs asyncpg's connect to its end in a task of its own and
holds the caller's cancellation back meanwhile (the attempt is bounded by
``connect_timeout``); a connection opened for a caller cancelled meanwhile is closed
gracefully (the server drops it after ending the session) before the cancellation goes
on, so the pool frees the place only once the server has too.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from statekit.backends.sql.holdback import shielded


async def connect(*args: Any, **kwargs: Any) -> Any:
    """What SQLAlchemy's asyncpg dialect awaits (its ``async_creator_fn`` hook)."""
    import asyncpg  # here: a SQLite-only install has no asyncpg

    attempt, interrupted = await shielded(asyncpg.connect(*args, **kwargs))
    if not interrupted:
        return attempt.result()
    if not attempt.cancelled() and attempt.exception() is None:
        connection = attempt.result()
        closing, _ = await shielded(connection.close(timeout=kwargs.get("timeout")))
        with contextlib.suppress(Exception):  # a failed close has aborted the connection
            closing.result()
    raise asyncio.CancelledError
