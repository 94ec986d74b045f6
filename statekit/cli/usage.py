"""Usage errors as one line: ``statekit: error: ...`` on stderr, exit 2.

Click (under Typer) reports a usage error (unknown option, missing argument, bad value)
as a usage line, a hint and a message, which Typer draws as a box when Rich is
installed: four lines or more, where every other error of the command is one. The
command's group runs click in ``standalone_mode=False`` and formats those errors itself;
``--help`` and a bare ``statekit`` still print the help.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup


def click_exceptions() -> ModuleType:
    """The exceptions module of the click that Typer runs on.

    Typer vendors click as ``typer._click`` (a private module) in recent releases; older
    ones run on the ``click`` package. The one place that knows, pinned by
    ``tests/test_cli_console.py``.
    """
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - Typer before the vendored click
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


class StatekitGroup(TyperGroup):
    """The ``statekit`` group: click's usage errors become one line and exit 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        exceptions = click_exceptions()
        try:
            code = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except exceptions.NoArgsIsHelpError as help_request:
            # Rich-formatted help is printed while the error is built; plain help is its text.
            if text := help_request.format_message().strip():
                typer.echo(text)
            code = help_request.exit_code
        except exceptions.UsageError as error:
            code = _usage_error(error)
        except exceptions.ClickException as error:
            _stderr(f"statekit: error: {' '.join(error.format_message().split())}")
            code = error.exit_code
        except typer.Abort:
            _stderr("statekit: error: aborted")
            code = 1
        if not standalone_mode:
            return code
        _exit(code if isinstance(code, int) else 0)


def _usage_error(error: Any) -> int:
    """One line: the command, click's message and where the help is."""
    message = " ".join(error.format_message().split()).removesuffix(".")
    ctx = error.ctx
    where = ""
    if ctx is not None:
        if ctx.parent is not None:  # a command's error, not the group's
            message = f"{ctx.info_name}: {message}"
        where = f" (see '{ctx.command_path} --help')"
    _stderr(f"statekit: error: {message}{where}")
    return int(error.exit_code)


def _stderr(line: str) -> None:
    typer.echo(line, err=True)


def _exit(code: int) -> NoReturn:
    sys.exit(code)
