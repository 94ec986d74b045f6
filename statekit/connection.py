"""``statekit.connect(url)``: a ready :class:`~statekit.StateStore` from a URL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from statekit import environment
from statekit.backends.registry import open_backend
from statekit.errors import ConfigurationError
from statekit.expiry import Duration, ExpiryPolicy
from statekit.store import StateStore
from statekit.telemetry import Telemetry
from statekit.url import BackendURL

if TYPE_CHECKING:
    from statekit.settings import StatekitSettings


def load_settings(**overrides: Any) -> StatekitSettings:
    """Settings from the environment and ``.env``, with bad values as ConfigurationError."""
    from pydantic import ValidationError

    from statekit.settings import StatekitSettings

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
    expiry: Mapping[str, Duration | None] | ExpiryPolicy | None = None,
    refresh_on_read: bool | None = None,
    sweep_interval: Duration | None = None,
    telemetry: bool | Telemetry | None = None,
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

    ``expiry``, ``refresh_on_read`` and ``sweep_interval`` are the store's (see
    :class:`~statekit.StateStore`); each wins over its setting, ``expiry`` scope by scope
    (``STATEKIT_EXPIRY_<SCOPE>``; a scope given ``None`` here has no lifetime).
    ``telemetry`` (``False``, or a :class:`~statekit.telemetry.Telemetry` naming the
    providers) wins over ``STATEKIT_TELEMETRY``; see :mod:`statekit.telemetry`.
    """
    if settings is None and not environment.configured():
        # Nothing to read: the defaults, without importing pydantic-settings.
        default_url: str | BackendURL = BackendURL(environment.DEFAULT_URL)
        backend_options: dict[str, Any] = {}
        chosen = environment.default_store_options()
    else:
        settings = load_settings() if settings is None else settings
        default_url, backend_options = settings.url, settings.backend_options()
        chosen = settings.store_options()
    store_options = _store_options(chosen, expiry, refresh_on_read, sweep_interval)
    if telemetry is not None:
        store_options["telemetry"] = telemetry
    target = default_url if url is None else url
    return StateStore(open_backend(target, options, backend_options), **store_options)


def _store_options(
    chosen: dict[str, Any],
    expiry: Mapping[str, Duration | None] | ExpiryPolicy | None,
    refresh_on_read: bool | None,
    sweep_interval: Duration | None,
) -> dict[str, Any]:
    if isinstance(expiry, ExpiryPolicy):
        expiry = expiry.ttls
    if expiry is not None:
        if not isinstance(expiry, Mapping):
            raise ConfigurationError("expiry must map scope names to lifetimes")
        chosen["expiry"] = {**chosen["expiry"], **expiry}
    if refresh_on_read is not None:
        chosen["refresh_on_read"] = refresh_on_read
    if sweep_interval is not None:
        chosen["sweep_interval"] = sweep_interval
    return chosen
