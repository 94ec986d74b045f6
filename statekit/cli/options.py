"""Options every command shares, how output is printed, and how a command opens its store.

Results go to stdout as plain lines or JSON (``--json``), never wrapped: a pipe or a
file gets each result on one line whatever the terminal's width. Rich draws only the
tables of ``bench`` and ``migrate``'s progress bar, and is imported only by them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from statekit.connection import connect
from statekit.store import StateStore

if TYPE_CHECKING:
    from rich.console import Console

#: The width Rich lays out for when the stream is not a terminal: no line is cut.
UNWRAPPED_WIDTH = 10_000

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Backend URL (default: STATEKIT_URL, else sqlite+aiosqlite:///./statekit.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
KeyArgument = Annotated[str, typer.Argument(help="State key.", show_default=False)]


def rich_console(*, stderr: bool = False) -> Console:
    """A Rich console on stdout (results) or stderr (progress); as wide as the terminal,
    or unlimited when the stream is a pipe or a file."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else UNWRAPPED_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def echo(line: str) -> None:
    """One result line on stdout, as it is (no markup, no wrapping)."""
    typer.echo(line)


def echo_value(value: Any) -> None:
    """A stored value as indented JSON text (what ``get`` and ``snapshot`` print)."""
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


@asynccontextmanager
async def open_store(url: str | None, **options: Any) -> AsyncIterator[StateStore]:
    """The store for ``--url`` (else the settings), closed on the way out."""
    async with connect(url, **options) as store:
        yield store
