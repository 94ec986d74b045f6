"""Exit codes, error reporting and output shared by every command.

Every failure a user can cause or meet ends in one line on stderr and a documented exit
code, never a traceback (set ``STATEKIT_DEBUG=1`` to see one for an internal error).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeVar

import typer

from statekit import logs
from statekit.errors import (
    BackendTimeoutError,
    ConfigurationError,
    InvalidFilterError,
    StateBackendError,
    UnsupportedCapabilityError,
)

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """The documented exit codes of ``statekit``."""

    OK = 0
    #: The key is absent, or the store refused the value (validation, version conflict).
    NOT_FOUND_OR_REFUSED = 1
    #: Bad options or arguments: invalid JSON, unknown scheme, missing driver extra, an
    #: identity filter refused, ``erase`` without ``--yes`` off a terminal.
    USAGE = 2
    #: The backend cannot be reached, timed out or failed; ``doctor`` found it unhealthy.
    BACKEND_UNAVAILABLE = 3
    #: ``migrate`` copied, but the target's counts differ from the source's.
    CHECK_FAILED = 4
    #: A bug in statekit: please report it (with ``STATEKIT_DEBUG=1`` output).
    INTERNAL = 70


def fail(message: str, code: ExitCode) -> NoReturn:
    """Stop the command with one line on stderr and ``code``."""
    _exit(message, code)


_FAULT_LOGGERS = frozenset({logs.REDIS_LOG.name, logs.SQL_LOG.name})


class _StderrWarnings(logging.Handler):
    """The store's warnings (a stored value skipped as undecodable, ...) as lines on
    stderr, where a user sees them while stdout stays one clean result."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in _FAULT_LOGGERS:
            return  # a backend fault: the command's own error line reports it
        typer.echo(f"statekit: warning: {record.getMessage()}", err=True)


@contextlib.contextmanager
def _warnings_on_stderr() -> Iterator[None]:
    handler = _StderrWarnings(logging.WARNING)
    logger = logging.getLogger("statekit")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def run(work: Callable[[], Awaitable[T]]) -> T:
    """Run one command's coroutine, turning every expected failure into an exit code."""
    try:
        with _warnings_on_stderr():
            return asyncio.run(_awaited(work))
    except (typer.Exit, typer.Abort):
        raise
    except (ConfigurationError, InvalidFilterError, UnsupportedCapabilityError) as exc:
        _exit(str(exc), ExitCode.USAGE)
    except BackendTimeoutError as exc:
        _exit(f"backend timed out: {exc}", ExitCode.BACKEND_UNAVAILABLE)
    except StateBackendError as exc:
        _exit(f"backend unavailable: {exc}", ExitCode.BACKEND_UNAVAILABLE)
    except KeyboardInterrupt:
        _exit("interrupted", ExitCode.BACKEND_UNAVAILABLE)
    except Exception as exc:
        if os.environ.get("STATEKIT_DEBUG") == "1":
            raise
        _exit(
            f"internal error ({type(exc).__name__}: {exc}); "
            "run with STATEKIT_DEBUG=1 for a traceback",
            ExitCode.INTERNAL,
        )


async def _awaited(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def _exit(message: str, code: ExitCode) -> NoReturn:
    exc = sys.exc_info()[1]
    logs.cli_error(type(exc).__name__ if exc is not None else "usage", int(code))
    one_line = " ".join(message.split())
    typer.echo(f"statekit: error: {one_line}", err=True)
    raise typer.Exit(int(code))


def emit_json(data: Any) -> None:
    """One JSON document on stdout, for scripts (``--json``)."""
    typer.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))


def parse_json_value(text: str, what: str = "value") -> Any:
    """User-given JSON text, or a usage error naming where it is wrong."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "quote strings as JSON, e.g. '\"text\"'",
            ExitCode.USAGE,
        )
