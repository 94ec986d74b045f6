"""The driver's query parameters of a SQL URL, checked before any I/O.

What is left of a URL's query once statekit's own options are taken out (see
:mod:`.options`) is meant for the driver. Each parameter is one the driver takes, a
libpq name mapped to asyncpg's (``sslmode`` -> ``ssl``, ``options`` -> its
``server_settings``), or refused here by name, a near miss with a suggestion
(``timout``: did you mean ``timeout``?). Left to the driver, an unknown name is a raw
``TypeError`` on PostgreSQL's first connection and a warning on SQLite.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy.engine import URL

from statekit.backends.sql.options import SQLOptions
from statekit.errors import ConfigurationError


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"SQL URL parameter {name}={raw!r} is not a boolean")


def _integer(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"SQL URL parameter {name}={raw!r} is not an integer") from None
    if value < 0:
        raise ConfigurationError(f"SQL URL parameter {name}={raw!r} must not be negative")
    return value


_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _ssl_mode(name: str, raw: str) -> str:
    if raw not in _SSL_MODES:
        raise ConfigurationError(
            f"SQL URL parameter {name}={raw!r} is not one of {', '.join(_SSL_MODES)}"
        )
    return raw


def _text(_name: str, raw: str) -> str:
    return raw


Converter = Callable[[str, str], Any]

#: asyncpg's ``connect()`` arguments a URL may give, with their types.
_ASYNCPG: Mapping[str, Converter] = {
    "ssl": _ssl_mode,
    "direct_tls": _boolean,
    "target_session_attrs": _text,
    "passfile": _text,
    "krbsrvname": _text,
    "gsslib": _text,
    "statement_cache_size": _integer,
    "max_cached_statement_lifetime": _integer,
    "max_cacheable_statement_size": _integer,
    "prepared_statement_cache_size": _integer,  # SQLAlchemy's adapter's own cache
}
#: libpq parameters with an asyncpg meaning: the asyncpg argument they become.
_LIBPQ_MAPPED = {"sslmode": "ssl"}
#: libpq parameters asyncpg has no URL form for, refused by name.
_LIBPQ_REFUSED = frozenset(
    {
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "sslcompression",
        "sslsni",
        "gssencmode",
        "channel_binding",
        "client_encoding",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "requirepeer",
        "hostaddr",
        "service",
    }
)
#: Server settings statekit derives from its own options.
_OWN_SETTINGS = {"application_name": "application_name", "statement_timeout": "timeout"}

#: sqlite3's ``connect()`` arguments a URL may give (SQLAlchemy converts them).
_SQLITE = frozenset({"uri", "cached_statements"})
#: SQLite URI parameters, which sqlite3 reads only with ``uri=true``.
_SQLITE_URI = frozenset({"mode", "cache", "vfs", "immutable", "nolock", "psow"})
#: sqlite3 arguments statekit sets itself.
_SQLITE_OWN = {
    "isolation_level": "statekit runs SQLite in driver-level autocommit",
    "detect_types": "statekit reads timestamps itself",
    "check_same_thread": "aiosqlite runs each connection on a thread of its own",
}


def driver_arguments(url: URL) -> tuple[URL, dict[str, Any]]:
    """``(url without its query, the driver's connect arguments)`` for a URL whose
    statekit options were taken out, or :class:`ConfigurationError` naming the first
    parameter that has no use. On SQLite the parameters stay in the URL (SQLAlchemy hands
    them to sqlite3), checked.
    """
    own_options = [field.alias or name for name, field in SQLOptions.model_fields.items()]
    if url.get_backend_name() == "sqlite":
        if url.host or url.port:  # sqlite+aiosqlite://./x.db: "." taken for a host
            raise ConfigurationError(
                "Invalid SQLite URL: a SQLite URL has no host; write the path after three "
                "slashes (sqlite+aiosqlite:///relative/path.db, "
                "sqlite+aiosqlite:////absolute/path.db or sqlite+aiosqlite:///:memory:)"
            )
        _check_sqlite(url.query, own_options)
        _check_sqlite_uri(url)
        return url, {}
    arguments: dict[str, Any] = {}
    for name, value in url.query.items():
        if not isinstance(value, str):
            raise ConfigurationError(f"SQL URL parameter {name!r} is given more than once")
        if name == "options":
            arguments["server_settings"] = server_settings(value)
        elif name in _LIBPQ_MAPPED or name in _ASYNCPG:
            target = _LIBPQ_MAPPED.get(name, name)
            if target in arguments:
                raise ConfigurationError(f"SQL URL parameters {target!r} and {name!r} clash")
            arguments[target] = _ASYNCPG[target](name, value)
        elif name in _LIBPQ_REFUSED:
            raise ConfigurationError(
                f"The libpq URL parameter {name!r} has no asyncpg equivalent on a URL: build "
                "the engine yourself and pass it to SQLBackend(engine), with asyncpg's "
                "connect_args (for TLS files, an ssl.SSLContext as 'ssl')"
            )
        else:
            known = [*own_options, *_ASYNCPG, *_LIBPQ_MAPPED, "options"]
            raise ConfigurationError(_unknown(name, known))
    return url.set(query={}), arguments


def server_settings(options: str) -> dict[str, str]:
    """libpq's ``options`` (``-c name=value`` or ``--name=value``, space separated) as
    asyncpg's ``server_settings``."""
    settings: dict[str, str] = {}
    words = shlex.split(options)
    while words:
        word = words.pop(0)
        if word == "-c" and words:
            setting = words.pop(0)
        elif (word.startswith("-c") and len(word) > 2) or word.startswith("--"):
            setting = word[2:]
        else:
            raise ConfigurationError(
                f"SQL URL parameter options={options!r}: expected '-c name=value' settings"
            )
        name, equals, value = setting.partition("=")
        if not equals or not name:
            raise ConfigurationError(f"SQL URL parameter options: {setting!r} is not name=value")
        name = name.replace("-", "_")
        if name in _OWN_SETTINGS:
            raise ConfigurationError(
                f"Set {name} with statekit's {_OWN_SETTINGS[name]!r} option, not in 'options'"
            )
        settings[name] = value
    return settings


def _check_sqlite(query: Mapping[str, Any], own_options: Iterable[str]) -> None:
    uri = _boolean("uri", str(query["uri"])) if "uri" in query else False
    for name in query:
        if name in _SQLITE:
            continue
        if name in _SQLITE_URI:
            if not uri:
                raise ConfigurationError(
                    f"{name!r} is a SQLite URI parameter: add uri=true to the URL for it"
                )
            continue
        if name in _SQLITE_OWN:
            raise ConfigurationError(
                f"SQL URL parameter {name!r} cannot be set: {_SQLITE_OWN[name]}"
            )
        raise ConfigurationError(_unknown(name, [*own_options, *_SQLITE, *_SQLITE_URI]))


def _check_sqlite_uri(url: URL) -> None:
    """With ``uri=true`` the database must be a SQLite URI (``file:...``), and a ``file:``
    database needs ``uri=true``: either way sqlite3 would otherwise take the whole text
    (``x.db?mode=ro``, ``file:x.db``) for a file name, create that file and ignore the
    parameters (``mode=ro`` would not be read-only)."""
    uri = "uri" in url.query and _boolean("uri", str(url.query["uri"]))
    database = url.database or ""
    if uri and not database.startswith("file:") and _SQLITE_URI.intersection(url.query):
        raise ConfigurationError(
            "With uri=true the SQLite database is a URI: write it as file:PATH "
            "(sqlite+aiosqlite:///file:relative/path.db?uri=true&mode=ro, "
            "sqlite+aiosqlite:///file:/absolute/path.db?uri=true&mode=ro)"
        )
    if database.startswith("file:") and not uri:
        raise ConfigurationError(
            "A SQLite database written as a file: URI needs uri=true in the URL"
        )


def _unknown(name: str, known: Iterable[str]) -> str:
    message = f"Unknown SQL URL parameter {name!r}"
    close = difflib.get_close_matches(name, sorted(set(known)), n=1)
    return f"{message} (did you mean {close[0]!r}?)" if close else message
