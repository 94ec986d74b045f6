"""The ``statekit`` command: state by hand, migration between backends, health, speed.

The command needs the ``cli`` extra (Typer and Rich); :func:`main` says so plainly when
it is missing instead of failing with an import error.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    try:
        from statekit.cli.app import app
    except ModuleNotFoundError as exc:
        if exc.name not in ("typer", "rich", "click"):
            raise
        sys.stderr.write(
            f"statekit: the command line needs {exc.name!r}; "
            "install it with: pip install 'statekit[cli]'\n"
        )
        raise SystemExit(2) from None
    app(prog_name="statekit")  # also under ``python -m statekit.cli``
