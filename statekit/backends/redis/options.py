"""A Redis URL plus options, parsed once into a :class:`RedisConfig`, without any I/O.

Options come from the URL query first; keyword arguments win over the URL. Unknown
query parameters and keyword arguments are refused here, before any I/O, instead of
failing later inside the driver. Each transport builds its client from the config (see
:mod:`~statekit.backends.redis.transport`, :mod:`~statekit.backends.redis.cluster`,
:mod:`~statekit.backends.redis.sentinel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from statekit.errors import ConfigurationError
from statekit.url import BackendURL

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "RedisConfig",
    "RedisOptions",
    "parse_url",
    "validate_key_prefix",
]

#: The default key prefix: every Redis key of the store starts with it.
DEFAULT_KEY_PREFIX = "statekit:"

# Query parameters handed to redis-py untouched (database and TLS settings).
_PASSTHROUGH = frozenset(
    {"db", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)
# Options only some transports take (they name them in ``parse_url``'s ``extra``); never
# read from a URL query, which is shown unmasked in reprs and messages.
_SECRETS = frozenset({"sentinel_password"})


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """The options a Redis backend takes, with their defaults."""

    key_prefix: str = DEFAULT_KEY_PREFIX
    pool_size: int = 32
    timeout: float = 5.0
    connect_timeout: float = 5.0
    retries: int = 3
    client_name: str | None = None
    auto_pipeline: bool = True
    #: The Sentinels' own password (``requirepass`` on the Sentinels), when it differs
    #: from the data nodes' password in the URL. Keyword only.
    sentinel_password: str | None = field(default=None, repr=False)

    def retry(self) -> Retry:
        """Retries on connection errors only, with a short exponential backoff.

        The backend sends its commands itself on the pool's connections, so this governs
        opening a connection and how many times a read is sent again after a lost reply;
        a write is never sent again (it may have been applied). Timeouts are deliberately
        not retried: a caller must see ``BackendTimeoutError`` within ``timeout``.
        """
        return Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            self.retries,
            supported_errors=(RedisConnectionError,),
        )

    def connection_kwargs(self) -> dict[str, Any]:
        """What every redis-py client of the backend is built with (socket timeouts,
        connect retries, client name, bytes replies)."""
        return {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": self.retry(),
            "client_name": self.client_name,
            "decode_responses": False,
        }


_OPTION_NAMES = frozenset(f.name for f in fields(RedisOptions))


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """A parsed Redis URL: what a transport builds its client from."""

    #: The URL as given (masked in ``str``), for reprs and messages.
    url: BackendURL
    scheme: str
    #: The URL text without statekit's options, password included: for the driver only.
    driver_url: str
    options: RedisOptions
    #: Query parameters for redis-py itself (``db``, ``ssl_*``).
    passthrough: dict[str, str]

    def nodes(self) -> tuple[str | None, str | None, list[tuple[str, int]]]:
        """``(username, password, [(host, port), ...])`` of a URL naming several nodes
        (``redis+cluster://u:p@h1:7000,h2:7001``); every node needs its port."""
        netloc = urlsplit(self.driver_url).netloc
        userinfo, _, hosts = netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        nodes = []
        for host_port in hosts.split(","):
            host, _, port = host_port.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError(f"Bad Redis node {host_port!r} in {self.url}")
            nodes.append((host.strip("[]"), int(port)))
        return unquote(username) or None, unquote(password) or None, nodes

    def path(self) -> list[str]:
        """The URL path's segments (``/mymaster/0`` -> ``["mymaster", "0"]``)."""
        path = urlsplit(self.driver_url).path.strip("/")
        return [unquote(part) for part in path.split("/")] if path else []

    def tls_kwargs(self) -> dict[str, Any]:
        """The ``ssl_*`` query parameters as redis-py's keyword arguments."""
        tls: dict[str, Any] = {k: v for k, v in self.passthrough.items() if k.startswith("ssl_")}
        if "ssl_check_hostname" in tls:
            tls["ssl_check_hostname"] = tls["ssl_check_hostname"].lower() in ("1", "true", "yes")
        return tls


_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _convert(name: str, raw: Any) -> Any:
    if name == "auto_pipeline":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in _BOOLEANS:
            return _BOOLEANS[raw.lower()]
        raise ConfigurationError(f"Invalid Redis option {name}={raw!r}")
    try:
        if name in ("pool_size", "retries"):
            value: Any = int(raw)
            if value < (1 if name == "pool_size" else 0):
                raise ValueError(raw)
            return value
        if name in ("timeout", "connect_timeout"):
            value = float(raw)
            if not value > 0:
                raise ValueError(raw)
            return value
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"Invalid Redis option {name}={raw!r}") from exc
    if name == "key_prefix":
        return validate_key_prefix(str(raw))
    return None if raw is None else str(raw)


def validate_key_prefix(prefix: str) -> str:
    """Refuse prefixes that would break the layout.

    Braces would move the cluster hash tag away from the scope key, and would let one
    store's ``SCAN`` pattern match another store's keys; an empty prefix would make
    ``clear`` reach every scope-shaped key of the database.
    """
    if not prefix:
        raise ConfigurationError("Redis key_prefix must not be empty")
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(f"Redis key_prefix must not contain braces: {prefix!r}")
    return prefix


def _check_address(url: BackendURL, parts: SplitResult, passthrough: dict[str, str]) -> None:
    """Refuse a port or database redis-py would fail on later (a raw ``ValueError``) or
    silently ignore (``/abc`` is database 0 to redis-py). A URL naming several nodes
    (cluster, Sentinel) has its nodes checked by :meth:`RedisConfig.nodes`."""
    if "," not in parts.netloc:
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError(
                f"Bad port in the Redis URL {url}: a port is a number from 1 to 65535 "
                "(redis://host:6379/0)"
            ) from None
        if port == 0:
            raise ConfigurationError(f"Bad port 0 in the Redis URL {url}")
    databases = [passthrough["db"]] if "db" in passthrough else []
    if url.scheme in ("redis", "rediss") and parts.path.strip("/"):
        databases.append(unquote(parts.path.strip("/")))
    for db in databases:
        if not db.isdigit():
            # Neither the port's nor the path's text is quoted: in a URL whose password
            # holds an unencoded "/" or ":", that text is part of the password.
            raise ConfigurationError(
                f"Bad Redis database in {url}: the database is a number "
                "(redis://host:6379/0, or ?db=0)"
            )


def parse_url(
    url: BackendURL, options: dict[str, Any], extra: frozenset[str] = frozenset()
) -> RedisConfig:
    """The config for ``url`` and keyword ``options`` (which win over the URL's query).

    ``extra`` names the options of :data:`_SECRETS` this URL's transport takes (keyword
    only: a URL query would show them).
    """
    parts = urlsplit(url.unmasked())
    known = _OPTION_NAMES - (_SECRETS - extra)
    values: dict[str, Any] = {}
    passthrough: dict[str, str] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True):
        if name in _SECRETS:
            raise ConfigurationError(
                f"Pass {name} as a keyword option, not in the URL, which is shown in messages"
            )
        if name in known:
            values[name] = raw
        elif name in _PASSTHROUGH:
            passthrough[name] = raw
        else:
            raise ConfigurationError(f"Unknown Redis URL parameter {name!r}")
    _check_address(url, parts, passthrough)
    unknown = set(options) - known
    if unknown:
        raise ConfigurationError(f"Unknown Redis option(s): {', '.join(sorted(unknown))}")
    values.update(options)
    converted = RedisOptions(**{k: _convert(k, v) for k, v in values.items()})
    driver_url = urlunsplit(parts._replace(query=urlencode(passthrough)))
    return RedisConfig(url, url.scheme, driver_url, converted, passthrough)
