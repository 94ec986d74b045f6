"""Statements on the driver's own connection, checked out of SQLAlchemy's pool.

The pool stays SQLAlchemy's (its size, timeout, pre-ping, recycling and invalidation
apply as for any other use of the engine); only the execution skips SQLAlchemy's
``Connection``: asyncpg runs the SQL as a prepared statement from its own cache, in one
round trip, and aiosqlite runs it with one hand-off to its worker thread instead of four
(cursor, execute, fetch, close). SQLAlchemy's cursor-execution events therefore do not
see these statements. Call these functions inside ``greenlet_spawn``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.util import await_only

# aiosqlite's messages for a connection that is gone (SQLAlchemy maps them the same way).
_CLOSED_MESSAGES = ("no active connection", "connection closed")


class ConnectionLost(Exception):
    """The connection died during the statement (its cause says how); the pool has
    discarded it together with every connection opened before the failure."""


def run(engine: Engine, sql: str, arguments: Sequence[Any]) -> Sequence[Any]:
    """Run one statement on its own and return its rows (possibly none).

    No transaction: asyncpg runs it outside one; sqlite3 runs it in autocommit mode or,
    on a connection in sqlite3's legacy transaction mode (a host's engine), commits the
    transaction the write opened.
    """
    with _checked_out(engine) as driver:
        if engine.dialect.name == "postgresql":
            return await_only(driver.fetch(sql, *arguments))
        rows: Sequence[Any] = await_only(driver.execute_fetchall(sql, arguments))
        if driver.in_transaction:
            await_only(driver.commit())
        return rows


def run_many(engine: Engine, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run one statement once per row, in order, all or nothing."""
    with _checked_out(engine) as driver:
        if engine.dialect.name == "postgresql":
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


@contextlib.contextmanager
def _checked_out(engine: Engine) -> Iterator[Any]:
    """asyncpg's or aiosqlite's connection of a pooled connection, for one use."""
    fairy = engine.pool.connect()
    try:
        yield fairy.driver_connection
    except Exception as error:
        if _is_lost(engine, fairy.dbapi_connection, error):
            # As SQLAlchemy does on a disconnect: drop this connection, and have the pool
            # replace every older one on checkout (they likely died together).
            engine.pool._invalidate(fairy, error)
            raise ConnectionLost(str(error)) from error
        raise
    except BaseException as error:
        # Cancelled mid-statement: the connection's state is unknown, never reuse it.
        fairy.invalidate(error)
        raise
    finally:
        fairy.close()


def _is_lost(engine: Engine, dbapi_connection: Any, error: Exception) -> bool:
    if isinstance(error, ValueError) and str(error).lower() in _CLOSED_MESSAGES:
        return True
    # asyncpg: whether the connection is closed; aiosqlite: sqlite3's closed-database errors.
    return bool(engine.dialect.is_disconnect(error, dbapi_connection, None))  # type: ignore[arg-type]
