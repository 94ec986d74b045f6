"""``python -m statekit.cli``: the ``statekit`` command."""

from statekit.cli import main

main()
