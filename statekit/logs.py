"""statekit's loggers and the records it writes on them (see docs/logging.md).

The hierarchy is ``statekit`` (the store: refusals, undecodable values, sweeps),
``statekit.redis`` and ``statekit.sql`` (backend faults) and ``statekit.cli`` (the errors
the command line reports). The library installs no handler but a
:class:`logging.NullHandler` on ``statekit``: what is shown, and where, is the host's choice.

Records name classes, operations, scope names and server addresses, never a value, a
state key, a scope key, an identity or id, or a password: a key can be personal data and a
message can quote its input, so the helpers here take only what is safe to write.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

__all__ = [
    "CLI_LOG",
    "LOG",
    "REDIS_LOG",
    "SQL_LOG",
    "backend_fault",
    "backend_retry",
    "cli_error",
    "refusal",
    "server_address",
]

LOG = logging.getLogger("statekit")
REDIS_LOG = logging.getLogger("statekit.redis")
SQL_LOG = logging.getLogger("statekit.sql")
CLI_LOG = logging.getLogger("statekit.cli")
LOG.addHandler(logging.NullHandler())

# Set on an error once its fault is logged, so the same fault seen again on its way up
# (a boundary inside a boundary, a caller re-raising) is not logged twice.
_LOGGED = "_statekit_logged"


def refusal(logger: Any, reason: str, operation: str, scope: str | None) -> None:
    """One DEBUG record for a refused input: its class (``Refusal.reason``), the
    operation and the scope name (one of the four, or ``None`` when not yet known).

    ``logger`` is the host's own logger passed to a store method, or ``None`` for
    ``statekit``. The enabled check comes first: the refused path is a hot one.
    """
    target = logger or LOG
    enabled = getattr(target, "isEnabledFor", None)  # a host's logger may lack it
    if enabled is not None and not enabled(logging.DEBUG):
        return
    target.debug(
        "state update refused: reason=%s operation=%s scope=%s",
        reason,
        operation,
        scope or "-",
        extra={
            "statekit_reason": reason,
            "statekit_operation": operation,
            "statekit_scope": scope,
        },
    )


def backend_fault(
    logger: logging.Logger, error: BaseException, operation: str, address: str | None
) -> None:
    """One WARNING record for a backend fault translated into ``error`` (a statekit
    error): its class, the operation and the server's ``host:port``.

    The driver's message is left out (it can quote a statement, a key or a URL). An
    error already logged is skipped, so a fault is logged once however far it travels.
    """
    if getattr(error, _LOGGED, False):
        return
    # An error class with __slots__ cannot be marked: it is logged each time it is seen.
    with contextlib.suppress(AttributeError):
        setattr(error, _LOGGED, True)
    if not logger.isEnabledFor(logging.WARNING):
        return
    kind = type(error).__name__
    cause = type(error.__cause__).__name__ if error.__cause__ is not None else "-"
    logger.warning(
        "backend fault: %s (cause %s) during %s on %s",
        kind,
        cause,
        operation,
        address or "-",
        extra={
            "statekit_error": kind,
            "statekit_operation": operation,
            "statekit_server": address,
        },
    )


def backend_retry(
    logger: logging.Logger, cause: BaseException, operation: str, address: str | None
) -> None:
    """One DEBUG record for a failure a backend retries itself (the fault, if the retry
    fails too, is the WARNING): the driver's class only, never its message."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "retrying after %s during %s on %s",
            type(cause).__name__,
            operation,
            address or "-",
            extra={"statekit_error": type(cause).__name__, "statekit_operation": operation},
        )


def cli_error(kind: str, code: int) -> None:
    """One DEBUG record on ``statekit.cli`` for an error the command line reports on
    stderr: its class and the exit code (the stderr line itself is unchanged)."""
    if CLI_LOG.isEnabledFor(logging.DEBUG):
        CLI_LOG.debug(
            "command failed: %s (exit %d)",
            kind,
            code,
            extra={"statekit_error": kind, "statekit_exit_code": code},
        )


def server_address(host: object, port: object) -> str | None:
    """``host:port`` for a record, or ``None`` when the host is unknown (a socket path,
    a file): never a URL, which could carry a password."""
    if not isinstance(host, str) or not host:
        return None
    return f"{host}:{port}" if port is not None else host
