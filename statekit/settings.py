"""Where statekit's configuration comes from when the code does not say.

``statekit.connect()`` and the ``statekit`` command read these settings from the
environment (``STATEKIT_URL``, ``STATEKIT_TIMEOUT``, ...) or a ``.env`` file in the
working directory. Precedence, highest first: a keyword argument to ``connect()``, an
option in the URL's query, the environment, the ``.env`` file, the default.

Unset options (``None``) leave the backend's own default in place, and each backend is
handed only the options it takes (``key_prefix`` to Redis, ``table_name`` to SQL).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer
from pydantic_settings import BaseSettings, SettingsConfigDict

from statekit.url import BackendURL

#: The embedded default: an SQLite file in the working directory, no server needed.
DEFAULT_URL = "sqlite+aiosqlite:///./statekit.db"

#: A URL setting: parsed once into a :class:`~statekit.url.BackendURL`, so that the
#: settings' ``repr``, ``str`` and ``model_dump()`` show it with its password masked.
SecretURL = Annotated[
    BackendURL, BeforeValidator(BackendURL), PlainSerializer(str, return_type=str)
]


class StatekitSettings(BaseSettings):
    """statekit's settings; every field is read from ``STATEKIT_<FIELD>``.

    Every field but ``url`` is a backend option: a new one is added here and named in the
    ``settings_options`` of the backend classes that take it. ``url`` is a
    :class:`~statekit.url.BackendURL` (``url.unmasked()`` is the text with its password),
    and a refused value's error never quotes the input, which may hold a password.
    """

    model_config = SettingsConfigDict(
        env_prefix="STATEKIT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        arbitrary_types_allowed=True,
        hide_input_in_errors=True,
    )

    url: SecretURL = Field(
        default=BackendURL(DEFAULT_URL), description="Backend URL; its scheme picks the backend."
    )
    key_prefix: str | None = Field(default=None, description="Redis key prefix.")
    table_name: str | None = Field(default=None, description="SQL table name.")
    pool_size: int | None = Field(default=None, ge=1, description="Connections per pool.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds per operation.")
    connect_timeout: float | None = Field(default=None, gt=0, description="Seconds to connect.")

    def backend_options(self) -> dict[str, Any]:
        """The backend options that were set (``None`` ones are left to the backend)."""
        return {
            name: value
            for name in type(self).model_fields
            if name != "url" and (value := getattr(self, name)) is not None
        }
