"""Building an engine from options: pools and timeouts on PostgreSQL; on SQLite WAL, a
busy timeout, driver-level autocommit, and one shared connection for an in-memory
database."""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState, StaticPool

from statekit.backends.sql import postgres_connect, sqlite_connect
from statekit.backends.sql.options import SQLOptions
from statekit.errors import ConfigurationError

#: The engines :func:`build_engine` made: their pools are statekit's alone (a host's
#: engine is the host's pool, which gets each connection back as a call returns).
_BUILT: weakref.WeakSet[AsyncEngine] = weakref.WeakSet()


def built_here(engine: AsyncEngine) -> bool:
    """Whether :func:`build_engine` made ``engine`` (from a URL, not handed in)."""
    return engine in _BUILT


def is_memory_sqlite(url: URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database: ``:memory:`` (or nothing), or
    a URI (``?uri=true``) ``file::memory:`` or with ``mode=memory``."""
    if url.get_backend_name() != "sqlite":
        return False
    uri = str(url.query.get("uri", "")).lower() in ("true", "1")
    return (
        url.database in (None, "", ":memory:")
        or url.query.get("mode") == "memory"
        or (uri and url.database == "file::memory:")
    )


def _postgres_arguments(options: SQLOptions, connect_args: dict[str, Any]) -> dict[str, Any]:
    """The engine's arguments; ``connect_args`` (from the URL's query, see
    :mod:`.urlparams`) go to asyncpg, below the settings statekit derives."""
    pool_size, max_overflow = options.pool("postgresql")
    given = dict(connect_args)
    server_settings = given.pop("server_settings", {})
    return {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_pre_ping": options.pool_pre_ping,
        "pool_timeout": options.timeout,
        "connect_args": {
            **given,
            "async_creator_fn": postgres_connect.connect,
            "timeout": options.connect_timeout,
            # The client-side bound; statement_timeout also frees the server.
            "command_timeout": options.timeout,
            "server_settings": {
                **server_settings,
                "application_name": options.application_name,
                "statement_timeout": str(max(1, round(options.timeout * 1000))),
            },
        },
    }


def _sqlite_arguments(url: URL, options: SQLOptions) -> dict[str, Any]:
    # Returned connections are rolled back only when a transaction is open (_on_return).
    if is_memory_sqlite(url):
        # One connection, so every task sees the same database; the backend serialises
        # its use (see SQLBackend._guard).
        return {
            "connect_args": {"async_creator_fn": sqlite_connect.connect},
            "poolclass": StaticPool,
            "pool_reset_on_return": None,
        }
    pool_size, max_overflow = options.pool("sqlite")
    return {
        "connect_args": {"async_creator_fn": sqlite_connect.connect},
        "pool_reset_on_return": None,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_pre_ping": options.pool_pre_ping,
        "pool_timeout": options.timeout,
    }


def _on_sqlite_connect(busy_timeout_ms: int, wal: bool) -> Any:
    def configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # Writers wait for each other's lock instead of failing "database is locked".
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
            if wal:
                # Readers never block the writer and vice versa; persistent per file.
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()
        # Driver-level autocommit (SQLAlchemy's documented recipe for sqlite3): a statement
        # run on its own commits by itself, one hand-off to aiosqlite's thread where
        # sqlite3's implicit BEGIN would need a second one for the COMMIT. Transactions
        # begun through SQLAlchemy say BEGIN themselves (_begin).
        dbapi_connection.isolation_level = None

    return configure


def _begin(conn: Connection) -> None:
    # Under the AUTOCOMMIT isolation option SQLAlchemy expects no transaction at all.
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        conn.exec_driver_sql("BEGIN")


def _on_return(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    # What pool_reset_on_return="rollback" does, minus the hand-off to aiosqlite's thread
    # when no transaction is open (the usual case in autocommit mode).
    if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
        dbapi_connection.rollback()


def build_engine(
    url: URL, options: SQLOptions, connect_args: dict[str, Any] | None = None
) -> AsyncEngine:
    """An engine for ``url``; no connection is opened until first use."""
    backend = url.get_backend_name()
    arguments = (
        _postgres_arguments(options, connect_args or {})
        if backend == "postgresql"
        else _sqlite_arguments(url, options)
    )
    try:
        engine = create_async_engine(url, **arguments)
    except ArgumentError as exc:
        raise ConfigurationError(f"Invalid SQL URL: {exc}".splitlines()[0]) from None
    except ModuleNotFoundError as exc:
        extra = "postgres" if backend == "postgresql" else "sqlite"
        raise ConfigurationError(
            f"The {url.drivername} driver is not installed: pip install 'statekit[{extra}]'"
        ) from exc
    if backend == "sqlite":
        listener = _on_sqlite_connect(
            round(options.busy_timeout * 1000), wal=not is_memory_sqlite(url)
        )
        event.listen(engine.sync_engine, "connect", listener)
        event.listen(engine.sync_engine, "begin", _begin)
        event.listen(engine.sync_engine, "reset", _on_return)
    _BUILT.add(engine)
    return engine
