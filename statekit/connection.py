"""``statekit.connect(url)``: a ready :class:`~statekit.StateStore` from a URL."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from statekit.backends.registry import open_backend
from statekit.errors import ConfigurationError
from statekit.settings import StatekitSettings
from statekit.store import StateStore
from statekit.url import BackendURL


def load_settings(**overrides: Any) -> StatekitSettings:
    """Settings from the environment and ``.env``, with bad values as ConfigurationError."""
    try:
        return StatekitSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"STATEKIT_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"Invalid statekit settings: {problems}") from None


def connect(
    url: str | BackendURL | None = None,
    *,
    settings: StatekitSettings | None = None,
    **options: Any,
) -> StateStore:
    """Open the store named by ``url`` (default: ``STATEKIT_URL``, else the embedded
    SQLite file ``./statekit.db``).

    No I/O happens here: connections open on first use, so a wrong host shows up as a
    :class:`~statekit.errors.BackendUnavailableError` on the first operation, while an
    unknown scheme, a bad option or a missing driver extra raise
    :class:`~statekit.errors.ConfigurationError` at once. ``options`` go to the backend
    as they are and win over the URL's query and the settings. Use the store as
    ``async with statekit.connect(url) as store:`` or close it with ``await store.aclose()``.
    """
    if settings is None:
        settings = load_settings()
    target = settings.url if url is None else url
    return StateStore(open_backend(target, options, settings.backend_options()))
