"""The SQL backend's export: every entry with its context and its scope's deadline.

It runs through SQLAlchemy (its type processing and, on PostgreSQL and a SQLite file, a
server-side cursor of :data:`.statements.EXPORT_BATCH_SIZE` rows per fetch) and leaves
out the entries of expired scopes as every read does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from statekit.backends.base import ScopeContext, StateEntry
from statekit.backends.sql.faults import TRANSLATED, translate
from statekit.backends.sql.gateway import Gateway
from statekit.backends.sql.schema import CONTEXT_COLUMNS
from statekit.backends.sql.statements import EXPORT_BATCH_SIZE, Statements


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC time (SQLite hands back the naive UTC text it was given)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def deadline(expires_at: float | None) -> datetime | None:
    """A scopes row's ``expires_at`` (POSIX seconds) as a UTC time."""
    return None if expires_at is None else datetime.fromtimestamp(expires_at, timezone.utc)


def entry(row: Sequence[Any]) -> StateEntry:
    """A row of :attr:`.statements.Statements.export`'s columns as an entry."""
    end = 3 + len(CONTEXT_COLUMNS)
    created_at, updated_at, version, expires_at = row[end : end + 4]
    return StateEntry(
        row[0],
        row[1],
        row[2],
        ScopeContext(*row[3:end]),
        utc(created_at),
        utc(updated_at),
        version,
        deadline(expires_at),
    )


async def stream(
    engine: AsyncEngine,
    gateway: Gateway,
    statements: Statements,
    now: float,
    check_open: Callable[[], None],
) -> AsyncIterator[StateEntry]:
    """Every entry, from one server-side cursor."""
    try:
        async with gateway.guard(streaming=True), engine.connect() as conn:
            try:
                result = await conn.stream(
                    statements.export.execution_options(yield_per=EXPORT_BATCH_SIZE),
                    {"now": now},
                )
                async for row in result:
                    yield entry(row)
                    check_open()
            finally:
                if gateway.closed:
                    # The pool may be disposed already: close the connection itself.
                    await conn.invalidate()
    except TRANSLATED as exc:
        raise translate(exc, "export entries", address=gateway.address) from exc


async def pages(
    engine: AsyncEngine,
    gateway: Gateway,
    statements: Statements,
    now: float,
    check_open: Callable[[], None],
) -> AsyncIterator[StateEntry]:
    """Every entry, in short pages by id: the shared in-memory connection cannot stay
    lent to a cursor while the caller uses the backend between entries."""
    last_id = 0
    while True:
        try:
            async with gateway.guard(), engine.connect() as conn:
                result = await conn.execute(
                    statements.export_page, {"last_id": last_id, "now": now}
                )
                rows = result.all()
        except TRANSLATED as exc:
            raise translate(exc, "export entries", address=gateway.address) from exc
        for row in rows:
            yield entry(row)
            check_open()
        if len(rows) < EXPORT_BATCH_SIZE:
            return
        last_id = rows[-1][-1]
