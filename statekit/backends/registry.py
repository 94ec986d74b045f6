"""The one place that maps a URL scheme to a backend class.

Entries are ``"module:Class"`` strings imported only when a URL with that scheme is
opened, so ``import statekit`` never imports redis-py, SQLAlchemy or a database driver.
Third-party packages add schemes through the ``statekit.backends`` entry-point group
(name = scheme, value = ``"module:Class"``, the class having ``from_url``).

Built-in schemes win over entry points: an installed package cannot silently take over
``redis://`` or ``postgresql+asyncpg://``; such an entry point is ignored with a warning.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol

from statekit.backends.base import StateBackend
from statekit.errors import ConfigurationError
from statekit.url import BackendURL

ENTRY_POINT_GROUP = "statekit.backends"

_REDIS = "statekit.backends.redis:RedisBackend"
_SQL = "statekit.backends.sql:SQLBackend"

#: scheme -> "module:Class" of the built-in backends.
BUILTIN_BACKENDS: dict[str, str] = {
    "memory": "statekit.backends.memory:MemoryBackend",
    "redis": _REDIS,
    "rediss": _REDIS,
    "unix": _REDIS,
    "redis+cluster": _REDIS,
    "rediss+cluster": _REDIS,
    "postgresql+asyncpg": _SQL,
    "sqlite+aiosqlite": _SQL,
}

#: scheme -> the pip extra that installs its driver.
DRIVER_EXTRAS: dict[str, str] = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "postgresql+asyncpg": "postgres",
    "sqlite+aiosqlite": "sqlite",
}

#: Which settings (see :class:`statekit.settings.StatekitSettings`) each built-in class
#: takes. A third-party class declares its own in a ``settings_options`` attribute.
SETTINGS_OPTIONS: dict[str, frozenset[str]] = {
    "statekit.backends.memory:MemoryBackend": frozenset(),
    _REDIS: frozenset({"key_prefix", "pool_size", "timeout", "connect_timeout"}),
    _SQL: frozenset({"table_name", "pool_size", "timeout", "connect_timeout"}),
}


class BackendFactory(Protocol):
    """What a registered class provides: cheap construction from a URL, no I/O."""

    def from_url(self, url: str, **options: Any) -> StateBackend: ...


def plugin_backends() -> dict[str, str]:
    """Schemes registered by installed packages under ``statekit.backends``."""
    found: dict[str, str] = {}
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
        found[scheme] = entry.value
    return found


def known_backends() -> dict[str, str]:
    """Every scheme that can be opened: built-ins, then installed plugins."""
    return {**plugin_backends(), **BUILTIN_BACKENDS}


def resolve(scheme: str) -> tuple[str, BackendFactory]:
    """``("module:Class", class)`` for ``scheme``; imports the backend module now.

    Raises :class:`ConfigurationError` for an unknown scheme (listing the known ones) and
    for a missing driver (naming the extra to install).
    """
    backends = known_backends()
    target = backends.get(scheme.lower())
    if target is None:
        known = ", ".join(f"{name}://" for name in sorted(backends))
        raise ConfigurationError(f"Unknown backend scheme {scheme!r}; known schemes: {known}")
    return target, _load(scheme, target)


def open_backend(
    url: str | BackendURL, options: Mapping[str, Any], settings: Mapping[str, Any]
) -> StateBackend:
    """Build the backend for ``url`` without I/O.

    ``options`` are passed as they are (the caller asked for them); from ``settings``
    only the ones the backend takes are passed, and only where the URL's query does not
    set them already, so ``keyword > URL query > settings``.
    """
    parsed = BackendURL(url)
    target, factory = resolve(parsed.scheme)
    accepted = SETTINGS_OPTIONS.get(target)
    if accepted is None:
        accepted = frozenset(getattr(factory, "settings_options", ()))
    query = parsed.query
    merged = {
        name: value
        for name, value in settings.items()
        if name in accepted and name not in query and value is not None
    }
    merged.update(options)
    try:
        return factory.from_url(parsed.unmasked(), **merged)
    except ModuleNotFoundError as exc:
        # Some drivers are imported only when the engine or client is built.
        raise _missing_driver(parsed.scheme, target, exc) from exc


def _load(scheme: str, target: str) -> BackendFactory:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise _missing_driver(scheme, target, exc) from exc
    try:
        factory: BackendFactory = getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigurationError(f"Backend {target!r} for {scheme}:// does not exist") from exc
    if not callable(getattr(factory, "from_url", None)):
        raise ConfigurationError(f"Backend {target!r} for {scheme}:// has no from_url()")
    return factory


def _missing_driver(scheme: str, target: str, exc: ModuleNotFoundError) -> ConfigurationError:
    module_name = target.partition(":")[0]
    missing = exc.name or "a module"
    if missing == module_name or module_name.startswith(f"{missing}."):
        return ConfigurationError(
            f"Backend module {module_name!r} for {scheme}:// is not installed"
        )
    extra = DRIVER_EXTRAS.get(scheme.lower())
    hint = (
        f"install it with: pip install 'statekit[{extra}]'"
        if extra
        else "install the package that provides this backend"
    )
    return ConfigurationError(
        f"The {scheme}:// backend needs {missing!r}, which is not installed; {hint}"
    )
