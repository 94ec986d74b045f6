"""What the settings are when nothing configures statekit, and how to tell, cheaply.

:class:`~statekit.settings.StatekitSettings` reads ``STATEKIT_*`` variables and a
``.env`` file through pydantic-settings, whose import costs a short command (``statekit
get``) a noticeable share of its run. When no variable is named ``STATEKIT_...`` (in
any case: the settings ignore case) and there is no ``.env`` file in the working
directory, there is nothing to read and every setting is its default: those defaults
are kept here, and :func:`statekit.connect` uses them without importing the settings.
A test holds them equal to what ``StatekitSettings()`` gives.
"""

from __future__ import annotations

import os
from typing import Any

#: The embedded default: an SQLite file in the working directory, no server needed.
DEFAULT_URL = "sqlite+aiosqlite:///./statekit.db"
#: The prefix of every setting's variable (``STATEKIT_URL``, ...), matched in any case.
ENV_PREFIX = "STATEKIT_"
#: The dotenv file the settings read, in the working directory.
ENV_FILE = ".env"


def configured() -> bool:
    """Whether a variable or the ``.env`` file may set anything (then the settings are
    read as usual); ``False`` means every setting is its default."""
    return os.path.isfile(ENV_FILE) or any(
        name.upper().startswith(ENV_PREFIX) for name in os.environ
    )


def default_store_options() -> dict[str, Any]:
    """``StatekitSettings().store_options()`` with nothing configured."""
    return {"expiry": {}, "refresh_on_read": False, "sweep_interval": None, "telemetry": True}
