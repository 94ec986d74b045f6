"""The one place where SQLAlchemy and driver exceptions become statekit errors.

Statements run through SQLAlchemy raise its wrapped exceptions; statements run on the
driver's connection raise asyncpg's or sqlite3's own, which map the same way.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3

from sqlalchemy import exc as sa_exc

from statekit import logs
from statekit.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    StateBackendError,
    StatekitError,
)

#: What the backend translates; anything else (a bug) propagates unchanged.
TRANSLATED: tuple[type[BaseException], ...] = (
    sa_exc.SQLAlchemyError,
    OSError,
    asyncio.TimeoutError,
    ConnectionError,
)


def driver_errors(dialect_name: str) -> tuple[type[BaseException], ...]:
    """What a driver raises for a database failure (as opposed to a bug in the caller)."""
    if dialect_name == "postgresql":
        import asyncpg

        return (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    return (sqlite3.Error,)


# PostgreSQL SQLSTATEs: 57014 query_canceled (statement_timeout), 55P03 lock_not_available.
_TIMEOUT_STATES = frozenset({"57014", "55P03"})
# 40P01 deadlock_detected, 40001 serialization_failure: the transaction was rolled back.
_ABORTED_STATES = frozenset({"40P01", "40001"})
# 57P01-57P03: admin shutdown / crash shutdown / cannot connect now; class 08: connection.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03"})


def _sqlstate(error: BaseException) -> str | None:
    for candidate in (error, getattr(error, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def aborted_whole(error: BaseException) -> bool:
    """Whether the server aborted the transaction (or statement) to break a deadlock or
    a serialization conflict: it rolled everything back, so running it again is safe."""
    orig = getattr(error, "orig", None) or error
    return _sqlstate(orig) in _ABORTED_STATES


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, (asyncio.TimeoutError, TimeoutError, sa_exc.TimeoutError)):
        return True
    orig = getattr(error, "orig", None)
    if orig is None:
        orig = error  # a driver's own exception
    elif isinstance(orig, (asyncio.TimeoutError, TimeoutError)) or isinstance(
        orig.__cause__, (asyncio.TimeoutError, TimeoutError)
    ):
        return True
    # SQLite: the busy timeout expired while another connection held the write lock.
    return _sqlstate(orig) in _TIMEOUT_STATES or (
        isinstance(orig, sqlite3.OperationalError) and "database is locked" in str(orig)
    )


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return True
        if error.orig is None:
            return False
        return _driver_unavailable(error.orig) or isinstance(error.orig.__cause__, OSError)
    return _driver_unavailable(error)


def _driver_unavailable(error: BaseException) -> bool:
    # sqlite3's and asyncpg's classes that SQLAlchemy wraps as OperationalError or
    # InterfaceError, then PostgreSQL's connection SQLSTATEs.
    if isinstance(error, (sqlite3.OperationalError, sqlite3.InterfaceError)):
        return True
    if type(error).__module__.startswith("asyncpg"):
        import asyncpg

        if isinstance(error, asyncpg.InterfaceError):
            return True
    state = _sqlstate(error)
    return state is not None and (state.startswith("08") or state in _UNAVAILABLE_STATES)


# SQLSTATEs of settings that are wrong, not of a server that is down: 3D000
# invalid_catalog_name (no such database), 28000 invalid_authorization_specification (no
# such role, or pg_hba refuses it), 28P01 invalid_password.
_SETTING_HINTS = {
    "3D000": "create the database (createdb {name}) or fix the database name in the URL",
    "28000": "create the role (createuser {name}) or fix the user name in the URL",
    "28P01": "fix the user name or password in the URL",
}
_MISSING_NAME = re.compile(r'(?:database|role) "(.+)" does not exist')


def _setting_problem(error: BaseException) -> str | None:
    """What is wrong with the URL's settings, when the server said so, with a hint."""
    orig = getattr(error, "orig", None) or error
    state = _sqlstate(orig)
    if state not in _SETTING_HINTS:
        return None
    cause = orig.__cause__ if _sqlstate(orig.__cause__ or orig) == state else None
    message = str(cause or orig).splitlines()[0].split(": ")[-1]
    found = _MISSING_NAME.search(message)
    hint = _SETTING_HINTS[state].format(name=found.group(1) if found else "NAME")
    return f"{message}: {hint}"


def translate(
    error: BaseException, what: str, *, lost: bool = False, address: str | None = None
) -> StatekitError:
    """The statekit error for a failure during ``what`` (raise it ``from error``);
    ``lost``: the connection died during it. A database or role that does not exist, or
    a refused password, is a :class:`ConfigurationError`: retrying cannot help.

    The one WARNING record of the fault is written here, on ``statekit.sql``, naming
    ``address`` (``host:port``) when the caller knows it: every SQL fault passes here
    once, after the retries the gateway makes, which stay unlogged.
    """
    translated = _translated(error, what, lost=lost)
    translated.__cause__ = error
    logs.backend_fault(logs.SQL_LOG, translated, what, address)
    return translated


def _translated(error: BaseException, what: str, *, lost: bool) -> StatekitError:
    problem = _setting_problem(error)
    if problem is not None:
        return ConfigurationError(f"SQL backend cannot {what}: {problem}")
    detail = f"SQL backend failed to {what}: {type(error).__name__}: {error}".splitlines()[0]
    if _is_timeout(error):
        return BackendTimeoutError(detail)
    if lost or _is_unavailable(error):
        return BackendUnavailableError(detail)
    return StateBackendError(detail)
