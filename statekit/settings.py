"""Where statekit's configuration comes from when the code does not say.

``statekit.connect()`` and the ``statekit`` command read these settings from the
environment (``STATEKIT_URL``, ``STATEKIT_TIMEOUT``, ...) or a ``.env`` file in the
working directory. Precedence, highest first: a keyword argument to ``connect()``, an
option in the URL's query, the environment, the ``.env`` file, the default.

Unset options (``None``) leave the backend's own default in place, and each backend is
handed only the options it takes (``key_prefix`` to Redis, ``table_name`` to SQL).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The embedded default: an SQLite file in the working directory, no server needed.
DEFAULT_URL = "sqlite+aiosqlite:///./statekit.db"


class StatekitSettings(BaseSettings):
    """statekit's settings; every field is read from ``STATEKIT_<FIELD>``.

    Every field but ``url`` is a backend option: a new one is added here and named in the
    ``settings_options`` of the backend classes that take it.
    """

    model_config = SettingsConfigDict(
        env_prefix="STATEKIT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    url: str = Field(DEFAULT_URL, description="Backend URL; its scheme picks the backend.")
    key_prefix: str | None = Field(None, description="Redis key prefix.")
    table_name: str | None = Field(None, description="SQL table name.")
    pool_size: int | None = Field(None, ge=1, description="Connections per pool.")
    timeout: float | None = Field(None, gt=0, description="Seconds per operation.")
    connect_timeout: float | None = Field(None, gt=0, description="Seconds to connect.")

    def backend_options(self) -> dict[str, Any]:
        """The backend options that were set (``None`` ones are left to the backend)."""
        return {
            name: value
            for name in type(self).model_fields
            if name != "url" and (value := getattr(self, name)) is not None
        }
