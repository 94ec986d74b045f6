"""Turning a Redis URL plus options into a redis-py client, without any I/O.

Kept apart from :mod:`statekit.backends.redis` so the backend module reads as the key
layout and its operations only. Options come from the URL query first; keyword
arguments win over the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from statekit.errors import ConfigurationError

#: The default key prefix: every Redis key of the store starts with it.
DEFAULT_KEY_PREFIX = "statekit:"

STANDALONE_SCHEMES = frozenset({"redis", "rediss", "unix"})
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})

# Query parameters handed to redis-py untouched (database and TLS settings).
_PASSTHROUGH = frozenset(
    {"db", "ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)


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


def mask_password(url: str) -> str:
    """``url`` with any password replaced by ``***``, for reprs and messages."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


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


def split_url(url: str, options: dict[str, Any]) -> tuple[str, str, RedisOptions, dict[str, str]]:
    """``(scheme, url without statekit options, options, passthrough query)``.

    Unknown query parameters and keyword arguments are refused here, before any I/O,
    instead of failing later inside the driver.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in STANDALONE_SCHEMES | CLUSTER_SCHEMES:
        raise ConfigurationError(f"Not a Redis URL: {mask_password(url)}")
    known = set(RedisOptions.__dataclass_fields__)
    values: dict[str, Any] = {}
    passthrough: dict[str, str] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True):
        if name in known:
            values[name] = raw
        elif name in _PASSTHROUGH:
            passthrough[name] = raw
        else:
            raise ConfigurationError(f"Unknown Redis URL parameter {name!r}")
    unknown = set(options) - known
    if unknown:
        raise ConfigurationError(f"Unknown Redis option(s): {', '.join(sorted(unknown))}")
    values.update(options)
    converted = RedisOptions(**{k: _convert(k, v) for k, v in values.items()})
    rest = urlunsplit(parts._replace(query=urlencode(passthrough)))
    return scheme, rest, converted, passthrough


def build_client(url: str, options: dict[str, Any]) -> tuple[Redis | RedisCluster, RedisOptions]:
    """A client for ``url`` that connects lazily, on its first command."""
    scheme, rest, opts, passthrough = split_url(url, options)
    common: dict[str, Any] = {
        "socket_timeout": opts.timeout,
        "socket_connect_timeout": opts.connect_timeout,
        "retry": opts.retry(),
        "client_name": opts.client_name,
        "decode_responses": False,
    }
    if scheme in CLUSTER_SCHEMES:
        del common["socket_timeout"]  # bounded per operation by the backend instead
        return _cluster_client(rest, scheme, opts, passthrough, common), opts
    if opts.auto_pipeline:
        # Bounded per round trip by the backend instead: a socket timeout costs redis-py
        # an extra task per send and a timer per reply, a good part of a pipelined call.
        del common["socket_timeout"]
    pool = BlockingConnectionPool.from_url(
        rest, max_connections=opts.pool_size, timeout=opts.timeout, **common
    )
    return Redis.from_pool(pool), opts


def _cluster_client(
    url: str,
    scheme: str,
    opts: RedisOptions,
    passthrough: dict[str, str],
    common: dict[str, Any],
) -> RedisCluster:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"Bad cluster node {host_port!r} in {mask_password(url)}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if passthrough.get("db", "0") != "0" or parts.path.strip("/") not in ("", "0"):
        raise ConfigurationError("Redis Cluster has only database 0")
    tls: dict[str, Any] = {k: v for k, v in passthrough.items() if k.startswith("ssl_")}
    if "ssl_check_hostname" in tls:
        tls["ssl_check_hostname"] = tls["ssl_check_hostname"].lower() in ("1", "true", "yes")
    return RedisCluster(
        startup_nodes=nodes,
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=scheme == "rediss+cluster",
        max_connections=opts.pool_size,
        **tls,
        **common,
    )
