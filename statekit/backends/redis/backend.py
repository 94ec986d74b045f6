"""The Redis backend's operations over the key layout, written once for every transport.

How the commands reach Redis (one server, a Cluster, the primary a Sentinel names) is the
:class:`~statekit.backends.redis.transport.Transport`'s business; which transport a URL
gets is decided once, in :meth:`RedisBackend.from_url`, by its scheme
(:mod:`~statekit.backends.redis.modes`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

# ``from redis import``: without redis-py, the error names the package to install.
from redis import asyncio as aioredis

from statekit.backends.base import (
    BackendInfo,
    Capability,
    StateEntry,
    StateWrite,
    SweepResult,
)
from statekit.backends.redis.boundary import ErrorBoundary, server_of
from statekit.backends.redis.entries import (
    context_json,
    glob_escape,
    pairs,
    scope_entries,
    text,
)
from statekit.backends.redis.expiry import deadline, ttl_argument
from statekit.backends.redis.identity import IdentityIndex
from statekit.backends.redis.modes import TRANSPORTS, transport_for
from statekit.backends.redis.options import DEFAULT_KEY_PREFIX, parse_url, validate_key_prefix
from statekit.backends.redis.pipeline import Command
from statekit.backends.redis.scripts import (
    DELETE_SHA,
    ENTRIES_SHA,
    GET_VERSIONED_SHA,
    LIST_SHA,
    REFRESH_SHA,
    WRITE_ONE_SHA,
    WRITE_ONE_TTL_SHA,
    WRITE_SHA,
    WRITE_TTL_SHA,
)
from statekit.backends.redis.transport import SCAN_BATCH, Transport
from statekit.errors import ConfigurationError, VersionConflictError
from statekit.telemetry.recorder import Recorder
from statekit.url import BackendURL

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["RedisBackend", "glob_escape"]

#: How many scopes' key names a backend keeps (:meth:`RedisBackend._keys`).
_KEY_CACHE_SIZE = 4096


class RedisBackend(IdentityIndex):
    """``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``, ``redis+sentinel://``:
    state in Redis hashes (the key layout is in :mod:`statekit.backends.redis`).

    Build it with :meth:`from_url` (the backend owns and closes its client), or pass a
    ``redis.asyncio.Redis`` / ``RedisCluster`` (or a Sentinel's ``master_for`` client) the
    host already owns: then :meth:`aclose` leaves that client open, since the host may
    still use it, unless ``owns_client=True`` hands it over (as on ``SQLBackend``).
    ``timeout`` (seconds) makes the backend itself bound each operation; a host-owned
    client usually has its own socket timeout instead. ``pool_size`` admits that many
    operations at once, first come first served, each waiting at most ``pool_timeout``
    seconds for its turn (:class:`~statekit.errors.BackendTimeoutError`); without
    auto-pipelining, a client whose pool is a ``BlockingConnectionPool`` gets this gate
    with the pool's size and timeout by default, as that pool serves its waiters in no
    particular order.

    Retries follow the client's ``Retry``: opening a connection is retried as it says,
    and so is a read whose connection dropped before its reply arrived (up to as many
    times, 0.1 s doubling backoff). A write is never sent twice, whatever the client's
    ``Retry``: its lost reply raises :class:`~statekit.errors.BackendUnavailableError`.

    Lifecycle: after :meth:`aclose` every call raises
    :class:`~statekit.errors.StoreClosedError`, and so do calls under way that had not
    completed. One backend serves one event loop after another (a module-level store used
    by several ``asyncio.run()`` calls): at its first call on a new loop it drops the old
    loop's connections without awaiting that loop and opens new ones; two loops at once
    (threads) are not supported. A database the server lacks, or credentials it refuses,
    raise :class:`~statekit.errors.ConfigurationError` (no retry can help).
    """

    capabilities = frozenset({Capability.VERSIONS, Capability.EXPIRY, Capability.ERASURE})
    #: The :class:`~statekit.settings.StatekitSettings` fields this backend takes.
    settings_options: ClassVar[frozenset[str]] = frozenset(
        {"key_prefix", "pool_size", "timeout", "connect_timeout"}
    )

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        *,
        timeout: float | None = None,
        pool_size: int | None = None,
        pool_timeout: float | None = 5.0,
        auto_pipeline: bool = True,
        owns_client: bool = False,
    ) -> None:
        transport = transport_for(
            client,
            timeout=timeout,
            pool_size=pool_size,
            pool_timeout=pool_timeout,
            auto_pipeline=auto_pipeline,
            owns_client=owns_client,
        )
        self._bind(transport, key_prefix, None)

    def _bind(self, transport: Transport, key_prefix: str, url: BackendURL | None) -> None:
        self._transport = transport
        self._prefix = validate_key_prefix(key_prefix)
        self._key_cache: dict[str, tuple[str, str, str, str]] = {}
        self._url = url
        self._errors = ErrorBoundary(server_of(transport.client))

    @classmethod
    def from_url(cls, url: str | BackendURL, **options: Any) -> Self:
        """A backend for ``url``; cheap, no I/O (connections open on first use).

        Options (URL query or keyword, keywords win): ``key_prefix``, ``pool_size``,
        ``timeout``, ``connect_timeout``, ``retries``, ``client_name``, ``auto_pipeline``
        (concurrent calls share pipelined round trips; not on a cluster, whose calls are
        one per operation), and for ``redis+sentinel://`` the keyword ``sentinel_password``.
        Unknown or invalid options raise :class:`~statekit.errors.ConfigurationError`.
        """
        parsed = BackendURL(url)
        mode = TRANSPORTS.get(parsed.scheme)
        if mode is None:
            raise ConfigurationError(f"Not a Redis URL: {parsed}")
        config = parse_url(parsed, options, mode.extra_options)
        backend = cls.__new__(cls)
        backend._bind(mode.from_config(config), config.options.key_prefix, parsed)
        return backend

    def __repr__(self) -> str:
        where = (
            str(self._url)
            if self._url is not None
            else f"client={type(self._transport.client).__name__}"
        )
        return f"RedisBackend({where!r}, key_prefix={self._prefix!r})"

    @property
    def key_prefix(self) -> str:
        """What every Redis key of this store starts with."""
        return self._prefix

    @property
    def recorder(self) -> Recorder:
        """Where the auto-pipeline's batch sizes and the gate's waits are reported."""
        return self._transport.recorder

    @property
    def telemetry_attributes(self) -> dict[str, str | int]:
        """The server this backend talks to, as OpenTelemetry database attributes: the
        host, port and database number, never a password or a key prefix."""
        attributes: dict[str, str | int] = {"db.system.name": "redis"}
        pool = getattr(self._transport.client, "connection_pool", None)
        where = {} if pool is None else pool.connection_kwargs
        if "db" in where:
            attributes["db.namespace"] = str(where["db"])
        if isinstance(where.get("host"), str):
            attributes["server.address"] = where["host"]
            if isinstance(where.get("port"), int):
                attributes["server.port"] = where["port"]
        return attributes

    # ---- keys ---------------------------------------------------------------------

    def _keys(self, scope_key: str) -> tuple[str, str, str, str]:
        """Value hash, meta hash, context and index of a scope (see the package doc);
        kept for the scopes last written, as a runner writes to few scopes at a time."""
        keys = self._key_cache.get(scope_key)
        if keys is None:
            value_key = f"{self._prefix}{{{scope_key}}}"
            keys = (value_key, value_key + ":meta", value_key + ":ctx", value_key + ":idx")
            if len(self._key_cache) >= _KEY_CACHE_SIZE:
                self._key_cache.clear()
            self._key_cache[scope_key] = keys
        return keys

    def _scope_of(self, value_key: str) -> str:
        return value_key[len(self._prefix) + 1 : -1]

    # ---- reads --------------------------------------------------------------------

    def _refresh(self, scope_key: str, ttl: float) -> Command:
        """The refresh on read of a scope: its existing deadline (if any) to now + ttl."""
        return ("EVALSHA", REFRESH_SHA, 4, *self._keys(scope_key), ttl_argument(ttl))

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        read = ("HGET", f"{self._prefix}{{{scope_key}}}", state_key)
        with self._errors:
            if ttl is None:
                raw = await self._transport.read(read)
            else:
                _, raw = await self._transport.read_many((self._refresh(scope_key, ttl), read))
        return None if raw is None else text(raw)

    async def get_versioned(
        self, scope_key: str, state_key: str, ttl: float | None = None
    ) -> tuple[str | None, int]:
        value_key, meta_key, _, _ = self._keys(scope_key)
        read = ("EVALSHA", GET_VERSIONED_SHA, 2, value_key, meta_key, state_key)
        with self._errors:
            if ttl is None:
                raw, meta = await self._transport.read(read)
            else:
                _, (raw, meta) = await self._transport.read_many(
                    (self._refresh(scope_key, ttl), read)
                )
        if raw is None or meta is None:
            return None, 0
        return text(raw), int(text(meta).split(":", 1)[0])

    async def read_scopes(
        self, scope_keys: Sequence[str], ttls: Mapping[str, float] | None = None
    ) -> dict[str, dict[str, str]]:
        """Pipelined ``HGETALL``s; each scope named in ``ttls`` refreshed just before its
        read, in the same round trip."""
        unique = list(dict.fromkeys(scope_keys))
        if not unique:
            return {}
        commands: list[Command] = []
        for scope_key in unique:
            if ttls and scope_key in ttls:
                commands.append(self._refresh(scope_key, ttls[scope_key]))
            commands.append(("HGETALL", f"{self._prefix}{{{scope_key}}}"))
        with self._errors:
            replies = await self._transport.read_many(commands)
        reads = (
            reply
            for command, reply in zip(commands, replies, strict=True)
            if command[0] == "HGETALL"
        )
        return {scope_key: pairs(reply) for scope_key, reply in zip(unique, reads, strict=True)}

    async def scope_deadline(self, scope_key: str) -> datetime | None:
        """``PEXPIRETIME`` of the scope's value hash (all its keys share it), as the
        deadline: ``None`` for a scope without one, absent or expired."""
        with self._errors:
            expire_time = await self._transport.read(
                ("PEXPIRETIME", f"{self._prefix}{{{scope_key}}}")
            )
        return deadline(int(expire_time))

    async def sweep_expired(self, batch_size: int = 1000) -> SweepResult:
        """Zeros: Redis reclaims expired keys by itself (on access, and by its background
        sampling of keys with an expire time). What lingers is the identity index entries
        of expired scopes, in sets of other hash slots: about ``batch_size`` of the index
        are checked per call (:meth:`prune_identity_index`)."""
        await self.prune_identity_index(batch_size)
        return SweepResult(0, 0)

    async def list_keys(
        self, scope_key: str, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], bool]:
        _, meta_key, _, index_key = self._keys(scope_key)
        # Every key with the prefix sorts in [prefix, prefix + 0xFF), as no UTF-8 text
        # holds the byte 0xFF; a cursor at or past the prefix raises the lower bound.
        if after is not None and after >= prefix:
            low: bytes = b"(" + after.encode()
        else:
            low = b"[" + prefix.encode() if prefix else b"-"
        high = b"(" + prefix.encode() + b"\xff" if prefix else b"+"
        with self._errors:
            # A read, though it may rebuild the index: sending it again rebuilds the same.
            keys = await self._transport.read(
                ("EVALSHA", LIST_SHA, 2, meta_key, index_key, low, high, limit + 1)
            )
        keys = [text(k) for k in keys]
        return keys[:limit], len(keys) > limit

    async def iter_entries(self) -> AsyncIterator[StateEntry]:
        batch: list[str] = []
        with self._errors:
            async for raw in self._transport.scan(glob_escape(self._prefix) + "{*}"):
                batch.append(text(raw))
                if len(batch) >= SCAN_BATCH:
                    for entry in await self._read_entries(batch):
                        yield entry
                    batch = []
            if batch:
                for entry in await self._read_entries(batch):
                    yield entry

    async def _read_entries(self, value_keys: list[str]) -> list[StateEntry]:
        commands: list[Command] = [
            ("EVALSHA", ENTRIES_SHA, 3, key, key + ":meta", key + ":ctx") for key in value_keys
        ]
        replies = await self._transport.read_many(commands)
        entries = []
        for value_key, reply in zip(value_keys, replies, strict=True):
            entries += scope_entries(self._scope_of(value_key), reply)
        return entries

    async def upgrade_schema(self) -> list[str]:
        """What ``statekit init`` (``StateStore.create_schema``) runs on Redis: index the
        scopes an earlier version wrote without identity index entries, so that searches
        and erasures find them (:meth:`index_existing_scopes`; safe to repeat)."""
        indexed = await self.index_existing_scopes()
        return [f"index {indexed} scopes written before the identity index"] if indexed else []

    # ---- writes -------------------------------------------------------------------

    async def set(self, write: StateWrite, expected_version: int | None = None) -> int:
        """One ``EVALSHA`` of the script for one write (:data:`WRITE_ONE_SHA`), which
        the auto-pipeline joins with the other single writes sent beside it
        (:mod:`~statekit.backends.redis.coalesce`); its reply is the new version, else
        a refusal as a list (a conflict, a new scope's claim)."""
        keys = self._keys(write.scope_key)
        expected = "" if expected_version is None else str(expected_version)
        state_key, value, context = write.state_key, write.value_json, context_json(write.context)
        command: Command = (
            ("EVALSHA", WRITE_ONE_SHA, 4, *keys, state_key, value, context, expected)
            if write.ttl is None
            else (
                *("EVALSHA", WRITE_ONE_TTL_SHA, 4, *keys, state_key, value, context, expected),
                ttl_argument(write.ttl),
            )
        )
        with self._errors:
            reply = await self._transport.write(keys[0], command)
            if type(reply) is int:  # written: its new version
                return reply
            if reply[0] == -2:  # a new scope: indexed first (see .identity)
                scope_key = write.scope_key
                reply = await self._create_scopes(
                    keys[0],
                    reply,
                    lambda _: scope_key,
                    lambda presented: (*command[:9], presented[scope_key], *command[10:]),
                )
        if type(reply) is not int:  # {-1, actual}: the script only refuses conditional sets
            assert expected_version is not None
            raise VersionConflictError(
                write.scope_key, write.state_key, expected_version, int(reply[1])
            )
        return reply

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        """One ``EVALSHA`` for the whole batch: one round trip, atomic.

        On a cluster a script may only touch one slot, so the batch runs as one atomic
        script per slot, the slots concurrently (atomic per slot, not across slots).
        Each write's ``ttl`` moves its scope's deadline; a batch without any takes the
        script without expiry. A batch creating scopes is sent again once they are
        indexed (:mod:`~statekit.backends.redis.identity`): nothing is written before.
        """
        if not writes:
            return
        for write in writes:  # every ttl checked before anything is sent
            if write.ttl is not None:
                ttl_argument(write.ttl)
        with self._errors:
            replies = await self._transport.write_grouped(
                writes, lambda write: self._keys(write.scope_key)[0], self._write_command
            )
            for group, reply in replies:
                if reply[0] == -2:  # new scopes: indexed first (see .identity)
                    await self._create_group(group, reply)

    def _write_command(
        self, writes: Sequence[StateWrite], presented: Mapping[str, str] | None = None
    ) -> Command:
        """The ``EVALSHA`` of the write script for ``writes`` (unconditional); the script
        with expiry, and each write's ttl argument, when any of them has a ttl.
        ``presented``: the stored contexts of claimed scopes, to create them."""
        keys: list[str] = []
        args: list[str] = [""]
        for write in writes:
            keys.extend(self._keys(write.scope_key))
            context = presented.get(write.scope_key) if presented else None
            args.extend((write.state_key, write.value_json, context or context_json(write.context)))
        if all(write.ttl is None for write in writes):
            return ("EVALSHA", WRITE_SHA, len(keys), *keys, *args)
        args.extend("" if w.ttl is None else ttl_argument(w.ttl) for w in writes)
        return ("EVALSHA", WRITE_TTL_SHA, len(keys), *keys, *args)

    async def delete(self, scope_key: str, state_key: str) -> bool:
        keys = self._keys(scope_key)
        with self._errors:
            removed = await self._transport.write(
                keys[0], ("EVALSHA", DELETE_SHA, 4, *keys, state_key)
            )
        return bool(removed)

    async def clear(self) -> None:
        """``SCAN`` + ``UNLINK`` in batches of this prefix's keys only (never ``KEYS``).

        ``UNLINK`` is a write like any other: never sent twice, as a second one could
        remove a key written again in between.
        """
        batch: list[str] = []
        with self._errors:
            async for key in self._transport.scan(glob_escape(self._prefix) + "{*"):
                batch.append(text(key))
                if len(batch) >= SCAN_BATCH:
                    await self._unlink(batch)
                    batch = []
            if batch:
                await self._unlink(batch)

    async def _unlink(self, keys: list[str]) -> None:
        await self._transport.write_grouped(keys, str, lambda group: ("UNLINK", *group))

    # ---- lifecycle ----------------------------------------------------------------

    async def describe(self) -> BackendInfo:
        """Server version and layout, plus a warning for the eviction policy: any policy
        but ``noeviction`` lets Redis silently drop state under memory pressure."""
        with self._errors:
            info = await self._transport.server_info()
        policy = str(info.get("maxmemory_policy", "unknown"))
        warnings: tuple[str, ...] = ()
        if policy not in ("noeviction", "unknown"):
            warnings = (f"maxmemory-policy {policy} may evict state",)
        return BackendInfo(
            backend=self._transport.kind,
            server_version=str(info.get("redis_version", "unknown")),
            layout="ok",
            namespace=self._prefix,
            url=None if self._url is None else str(self._url),
            warnings=warnings,
        )

    async def aclose(self) -> None:
        """Close the connections (and the client, if the backend owns it); idempotent.

        Every later call raises :class:`~statekit.errors.StoreClosedError`, and so does
        each call under way that has not completed: nothing is sent again, nothing
        reconnects, nothing waits on a connection that is gone."""
        if self._errors.closed:
            return
        self._errors.closed = True
        with ErrorBoundary(
            self._errors.address
        ):  # one of its own: closing maps errors as any call does
            await self._transport.aclose()
