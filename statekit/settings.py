"""Where statekit's configuration comes from when the code does not say.

``statekit.connect()`` and the ``statekit`` command read these settings from the
environment (``STATEKIT_URL``, ``STATEKIT_TIMEOUT``, ...) or a ``.env`` file in the
working directory. Precedence, highest first: a keyword argument to ``connect()``, an
option in the URL's query, the environment, the ``.env`` file, the default.

Unset options (``None``) leave the backend's own default in place, and each backend is
handed only the options it takes (``key_prefix`` to Redis, ``table_name`` to SQL). The
expiry settings (``STATEKIT_EXPIRY_CONVERSATION=30d``, ``STATEKIT_REFRESH_ON_READ``,
``STATEKIT_SWEEP_INTERVAL``) and ``STATEKIT_TELEMETRY=0`` (no spans or metrics) are the
store's own, never a backend's.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer
from pydantic_settings import BaseSettings, SettingsConfigDict

from statekit.environment import DEFAULT_URL as DEFAULT_URL
from statekit.environment import ENV_FILE, ENV_PREFIX
from statekit.expiry import parse_duration
from statekit.url import BackendURL

#: A URL setting: parsed once into a :class:`~statekit.url.BackendURL`, so that the
#: settings' ``repr``, ``str`` and ``model_dump()`` show it with its password masked.
SecretURL = Annotated[
    BackendURL, BeforeValidator(BackendURL), PlainSerializer(str, return_type=str)
]


def _lifetime(value: Any) -> float | None:
    return None if value is None or value == "" else parse_duration(value, "")


#: A lifetime setting: ``30d``, ``12h``, ``15m``, ``30s``, ``90`` (seconds) or ``never``,
#: parsed once into seconds (``never``: :data:`~statekit.NEVER`). Empty means unset.
Lifetime = Annotated[float | None, BeforeValidator(_lifetime)]

#: The settings that configure the store rather than its backend.
STORE_SETTINGS = frozenset(
    {
        "expiry_conversation",
        "expiry_actor",
        "expiry_subject",
        "expiry_runner",
        "refresh_on_read",
        "sweep_interval",
        "telemetry",
    }
)


class StatekitSettings(BaseSettings):
    """statekit's settings; every field is read from ``STATEKIT_<FIELD>``.

    Every field but ``url`` and the store's own (:data:`STORE_SETTINGS`, see
    :meth:`store_options`) is a backend option: a new one is added here and named in the
    ``settings_options`` of the backend classes that take it. ``url`` is a
    :class:`~statekit.url.BackendURL` (``url.unmasked()`` is the text with its password),
    and a refused value's error never quotes the input, which may hold a password.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=ENV_FILE,
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
    expiry_conversation: Lifetime = Field(default=None, description="Conversation lifetime.")
    expiry_actor: Lifetime = Field(default=None, description="Actor scope lifetime.")
    expiry_subject: Lifetime = Field(default=None, description="Subject scope lifetime.")
    expiry_runner: Lifetime = Field(default=None, description="Runner scope lifetime.")
    refresh_on_read: bool = Field(default=False, description="Reads extend lifetimes too.")
    sweep_interval: Lifetime = Field(default=None, description="Seconds between sweeps.")
    telemetry: bool = Field(default=True, description="OpenTelemetry spans and metrics.")

    def backend_options(self) -> dict[str, Any]:
        """The backend options that were set (``None`` ones are left to the backend)."""
        return {
            name: value
            for name in type(self).model_fields
            if name != "url"
            and name not in STORE_SETTINGS
            and (value := getattr(self, name)) is not None
        }

    def store_options(self) -> dict[str, Any]:
        """The :class:`~statekit.StateStore` keyword arguments these settings give:
        ``expiry`` (the scopes with a lifetime), ``refresh_on_read``, ``sweep_interval``,
        ``telemetry``."""
        expiry = {
            scope: ttl
            for scope in ("conversation", "actor", "subject", "runner")
            if (ttl := getattr(self, f"expiry_{scope}")) is not None
        }
        return {
            "expiry": expiry,
            "refresh_on_read": self.refresh_on_read,
            "sweep_interval": self.sweep_interval,
            "telemetry": self.telemetry,
        }
