"""The one place that maps a URL scheme to a backend class.

:data:`BUILTIN_BACKENDS` is the whole table: scheme -> :class:`Registration` (a
``"module:Class"`` string and the pip extra that installs its driver). Classes are
imported only when a URL with their scheme is opened, so ``import statekit`` never
imports redis-py, SQLAlchemy or a database driver. Third-party packages add schemes
through the ``statekit.backends`` entry-point group (name = scheme, value =
``"module:Class"``); every class, built-in or not, provides what :class:`BackendFactory`
describes and is read the same way.

Built-in schemes win over entry points: an installed package cannot silently take over
``redis://`` or ``postgresql+asyncpg://``; such an entry point is ignored with a warning.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from statekit.backends.base import StateBackend
from statekit.errors import ConfigurationError
from statekit.url import BackendURL

ENTRY_POINT_GROUP = "statekit.backends"


class Registration(NamedTuple):
    """What a scheme opens: ``target`` is ``"module:Class"``; ``extra`` is the pip extra
    that installs the driver (``None``: nothing to install, or a third party's)."""

    target: str
    extra: str | None = None


_REDIS = "statekit.backends.redis:RedisBackend"
_SQL = "statekit.backends.sql:SQLBackend"

#: scheme -> the built-in backend and its extra. ``postgresql://``, ``postgres://`` and
#: ``sqlite://`` mean the async drivers (asyncpg, aiosqlite), the only ones supported.
BUILTIN_BACKENDS: dict[str, Registration] = {
    "memory": Registration("statekit.backends.memory:MemoryBackend"),
    "redis": Registration(_REDIS, "redis"),
    "rediss": Registration(_REDIS, "redis"),
    "unix": Registration(_REDIS, "redis"),
    "redis+cluster": Registration(_REDIS, "redis"),
    "rediss+cluster": Registration(_REDIS, "redis"),
    "redis+sentinel": Registration(_REDIS, "redis"),
    "rediss+sentinel": Registration(_REDIS, "redis"),
    "postgresql+asyncpg": Registration(_SQL, "postgres"),
    "postgresql": Registration(_SQL, "postgres"),
    "postgres": Registration(_SQL, "postgres"),
    "sqlite+aiosqlite": Registration(_SQL, "sqlite"),
    "sqlite": Registration(_SQL, "sqlite"),
}


class BackendFactory(Protocol):
    """What a registered class provides.

    ``settings_options`` names the settings (fields of
    :class:`statekit.settings.StatekitSettings`) the class takes from the environment;
    a class without the attribute takes none. ``from_url`` builds a backend cheaply,
    without I/O, from the parsed URL (``url.unmasked()`` is the text for the driver;
    ``str(url)`` is safe to show).
    """

    settings_options: frozenset[str]

    def from_url(self, url: BackendURL, **options: Any) -> StateBackend: ...


def plugin_backends() -> dict[str, Registration]:
    """Schemes registered by installed packages under ``statekit.backends``."""
    # Imported and scanned only for a scheme that is not built in: reading every
    # installed package's metadata costs each short command tens of milliseconds.
    from importlib.metadata import entry_points

    found: dict[str, Registration] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        scheme = entry.name.lower()
        if scheme in BUILTIN_BACKENDS:
            warnings.warn(
                f"Ignoring the {ENTRY_POINT_GROUP} entry point {entry.value!r} for "
                f"{scheme}://: built-in backends take precedence",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        found[scheme] = Registration(entry.value)
    return found


def known_backends() -> dict[str, Registration]:
    """Every scheme that can be opened: built-ins, then installed plugins."""
    return {**plugin_backends(), **BUILTIN_BACKENDS}


def resolve(scheme: str) -> tuple[Registration, BackendFactory]:
    """The registration for ``scheme`` and its class; imports the backend module now.

    Raises :class:`ConfigurationError` for an unknown scheme (listing the known ones) and
    for a missing driver (naming the extra to install).
    """
    registration = BUILTIN_BACKENDS.get(scheme.lower())
    if registration is None:
        backends = known_backends()
        registration = backends.get(scheme.lower())
        if registration is None:
            known = ", ".join(f"{name}://" for name in sorted(backends))
            raise ConfigurationError(f"Unknown backend scheme {scheme!r}; known schemes: {known}")
    return registration, _load(scheme, registration)


def open_backend(
    url: str | BackendURL, options: Mapping[str, Any], settings: Mapping[str, Any]
) -> StateBackend:
    """Build the backend for ``url`` without I/O.

    ``options`` are passed as they are (the caller asked for them); from ``settings``
    only the ones the backend takes are passed, and only where the URL's query does not
    set them already, so ``keyword > URL query > settings``.
    """
    parsed = BackendURL(url)
    registration, factory = resolve(parsed.scheme)
    # The one way every class is read; a class that declares nothing takes nothing.
    accepted = frozenset(getattr(factory, "settings_options", ()))
    query = parsed.query
    merged = {
        name: value
        for name, value in settings.items()
        if name in accepted and name not in query and value is not None
    }
    merged.update(options)
    try:
        return factory.from_url(parsed, **merged)
    except ModuleNotFoundError as exc:
        # Some drivers are imported only when the engine or client is built.
        raise _missing_driver(parsed.scheme, registration, exc) from exc


def _load(scheme: str, registration: Registration) -> BackendFactory:
    target = registration.target
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise _missing_driver(scheme, registration, exc) from exc
    try:
        factory: BackendFactory = getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigurationError(f"Backend {target!r} for {scheme}:// does not exist") from exc
    if not callable(getattr(factory, "from_url", None)):
        raise ConfigurationError(f"Backend {target!r} for {scheme}:// has no from_url()")
    return factory


def _missing_driver(
    scheme: str, registration: Registration, exc: ModuleNotFoundError
) -> ConfigurationError:
    module_name = registration.target.partition(":")[0]
    missing = exc.name or "a module"
    if missing == module_name or module_name.startswith(f"{missing}."):
        return ConfigurationError(
            f"Backend module {module_name!r} for {scheme}:// is not installed"
        )
    hint = (
        f"install it with: pip install 'statekit[{registration.extra}]'"
        if registration.extra
        else "install the package that provides this backend"
    )
    return ConfigurationError(
        f"The {scheme}:// backend needs {missing!r}, which is not installed; {hint}"
    )
