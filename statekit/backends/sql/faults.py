"""The one place where SQLAlchemy and driver exceptions become statekit errors."""

from __future__ import annotations

import asyncio

from sqlalchemy import exc as sa_exc

from statekit.errors import BackendTimeoutError, BackendUnavailableError, StateBackendError

#: What the backend translates; anything else (a bug) propagates unchanged.
TRANSLATED: tuple[type[BaseException], ...] = (
    sa_exc.SQLAlchemyError,
    OSError,
    asyncio.TimeoutError,
    ConnectionError,
)

# PostgreSQL SQLSTATEs: 57014 query_canceled (statement_timeout), 55P03 lock_not_available.
_TIMEOUT_STATES = frozenset({"57014", "55P03"})
# 57P01-57P03: admin shutdown / crash shutdown / cannot connect now; class 08: connection.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03"})


def _sqlstate(error: BaseException) -> str | None:
    for candidate in (error, getattr(error, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _is_timeout(error: BaseException) -> bool:
    if isinstance(error, (asyncio.TimeoutError, TimeoutError, sa_exc.TimeoutError)):
        return True
    orig = getattr(error, "orig", None)
    if orig is None:
        return False
    if isinstance(orig, (asyncio.TimeoutError, TimeoutError)) or isinstance(
        orig.__cause__, (asyncio.TimeoutError, TimeoutError)
    ):
        return True
    # SQLite: the busy timeout expired while another connection held the write lock.
    return _sqlstate(orig) in _TIMEOUT_STATES or "database is locked" in str(orig)


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        state = _sqlstate(error.orig)
        if state is not None and (state.startswith("08") or state in _UNAVAILABLE_STATES):
            return True
        return isinstance(error.orig.__cause__, OSError)
    return False


def translate(error: BaseException, what: str) -> StateBackendError:
    """The statekit error for a failure during ``what`` (raise it ``from error``)."""
    detail = f"SQL backend failed to {what}: {type(error).__name__}: {error}".splitlines()[0]
    if _is_timeout(error):
        return BackendTimeoutError(detail)
    if _is_unavailable(error):
        return BackendUnavailableError(detail)
    return StateBackendError(detail)
