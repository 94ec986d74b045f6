"""Options every command shares, and the one way a command opens its store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer
from rich.console import Console

from statekit.connection import connect
from statekit.store import StateStore

#: Results on stdout; progress and diagnostics go to stderr so that stdout stays clean.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

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


@asynccontextmanager
async def open_store(url: str | None, **options: Any) -> AsyncIterator[StateStore]:
    """The store for ``--url`` (else the settings), closed on the way out."""
    async with connect(url, **options) as store:
        yield store
