"""Redis backend: one hash per scope, every write one server-side script call.

Key layout, for a store with ``key_prefix`` ``P`` (default ``statekit:``) and a scope key
``S``; the braces make ``S`` the cluster hash tag, so all keys of a scope share one slot::

    P{S}        hash  state_key -> value JSON            (read by get / read_scopes)
    P{S}:meta   hash  state_key -> "version:created_us:updated_us"
    P{S}:ctx    string  the scope's ScopeContext as JSON (set when the scope is created)
    P{S}:idx    sorted set  every state_key at score 0, for listing by prefix

Timestamps are microseconds since the epoch from the server's ``TIME``. Reads of values
are plain ``HGET`` / pipelined ``HGETALL``; writes and deletes are Lua scripts (one
``EVALSHA`` each) that keep the four keys consistent atomically. The index makes a
listing O(log n + limit) in a scope of n keys: members at one score sort by their bytes,
and UTF-8 byte order is code-point order, the order every backend lists in.

A write is never sent twice: if its connection drops before the reply arrives, the
caller gets :class:`~statekit.errors.BackendUnavailableError` and the write may or may not
have been applied. A read in that situation is simply sent again (see
:meth:`RedisBackend._request`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, cast

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from statekit.backends.base import (
    BackendInfo,
    Capability,
    ScopeContext,
    StateEntry,
    StateWrite,
)
from statekit.backends.gate import FifoGate
from statekit.backends.redis_pipeline import (
    AutoPipeline,
    Command,
    KeptConnections,
    NotSent,
    PooledConnections,
    Send,
    send_with_scripts,
)
from statekit.backends.redis_url import (
    DEFAULT_KEY_PREFIX,
    build_client,
    mask_password,
    validate_key_prefix,
)
from statekit.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    StateBackendError,
    VersionConflictError,
)

__all__ = ["DEFAULT_KEY_PREFIX", "RedisBackend"]

# KEYS: (value hash, meta hash, context key, index) per write. ARGV[1]: expected version or ""
# (only with a single write); then (field, value JSON, context JSON) per write.
# Returns the new versions, or {-1, actual} when the expected version differs.
# The context is written (if absent) only with a new key: an existing key means the scope
# and its context exist, and a SET per update cost about a tenth of the script.
_WRITE = """
local t = redis.call('TIME')
local us = t[2]
local now = t[1] .. string.sub('00000', #us) .. us
local expected = ARGV[1]
local versions = {}
for i = 0, #KEYS / 4 - 1 do
  local vkey, mkey, ckey, ikey = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  local field = ARGV[3 * i + 2]
  local version, created = 0, now
  local meta = redis.call('HGET', mkey, field)
  if meta then
    local v, c = string.match(meta, '^(%d+):(%d+):')
    version, created = tonumber(v), c
  end
  if expected ~= '' and tonumber(expected) ~= version then
    return {-1, version}
  end
  if not meta then
    redis.call('ZADD', ikey, 0, field)
    redis.call('SET', ckey, ARGV[3 * i + 4], 'NX')
  end
  version = version + 1
  redis.call('HSET', vkey, field, ARGV[3 * i + 3])
  redis.call('HSET', mkey, field, version .. ':' .. created .. ':' .. now)
  versions[#versions + 1] = version
end
return versions
"""

# KEYS: value hash, meta hash, context key, index. ARGV[1]: field. An emptied scope
# loses its context too, so a scope created again later stores its new creator's.
_DELETE = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
end
return removed
"""

# KEYS: meta hash, index. ARGV: lowest and highest member (ZRANGEBYLEX syntax), count.
# The index is rebuilt from the meta hash when their sizes differ: a scope written
# before the index existed, or edited by hand, lists the same as any other.
_LIST = """
local size = redis.call('HLEN', KEYS[1])
if redis.call('ZCARD', KEYS[2]) ~= size then
  redis.call('DEL', KEYS[2])
  local fields = redis.call('HKEYS', KEYS[1])
  for i = 1, #fields, 1000 do
    local members = {}
    for j = i, math.min(i + 999, #fields) do
      members[#members + 1] = 0
      members[#members + 1] = fields[j]
    end
    redis.call('ZADD', KEYS[2], unpack(members))
  end
end
return redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
"""

# Value and version read together, so they always belong to the same write.
_GET_VERSIONED = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

_SCRIPTS = {
    hashlib.sha1(s.encode()).hexdigest(): s for s in (_WRITE, _DELETE, _GET_VERSIONED, _LIST)
}
_WRITE_SHA, _DELETE_SHA, _GET_VERSIONED_SHA, _LIST_SHA = _SCRIPTS

_GLOB_SPECIAL = frozenset("*?[]\\")
_SCAN_BATCH = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _timestamp(micros: str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _pairs(reply: Any) -> dict[str, str]:
    """A ``HGETALL`` reply as text: a flat list from the wire (RESP2), or the dict that
    RESP3 and redis-py's own parsing give."""
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    return {_text(k): _text(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def _resend_delay(resends: int) -> float:
    """Backoff before sending a read again: 0.1 s doubling, at most 0.5 s, as the
    ``ExponentialBackoff`` that :mod:`statekit.backends.redis_url` gives connections."""
    return float(min(0.5, 0.05 * 2**resends))


@functools.lru_cache(maxsize=4096)
def _context_json(context: ScopeContext) -> str:
    """The context as stored in ``P{S}:ctx``; cached, as a runner writes with few contexts
    (and the store hands over the same checked context object for the same scope)."""
    return json.dumps(context.as_dict(), separators=(",", ":"))


class _ErrorMapper:
    """Translate redis-py exceptions into statekit's error tree at the boundary.

    A class rather than a ``@contextmanager`` generator: it wraps every operation, and
    entering and leaving a generator costs several times as much.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, (redis_errors.TimeoutError, asyncio.TimeoutError)):
            raise BackendTimeoutError(f"Redis did not answer in time: {exc}") from exc
        if isinstance(exc, (redis_errors.ConnectionError, redis_errors.ClusterDownError)):
            raise BackendUnavailableError(f"Redis is unavailable: {exc}") from exc
        if isinstance(exc, (redis_errors.RedisError, redis_errors.RedisClusterException)):
            raise StateBackendError(f"Redis error: {exc}") from exc


_ERROR_MAPPER = _ErrorMapper()


def _mapped_errors() -> _ErrorMapper:
    return _ERROR_MAPPER


def _raise_errors(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class RedisBackend:
    """``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``: state in Redis hashes.

    Build it with :meth:`from_url` (the backend owns and closes its client), or pass a
    ``redis.asyncio.Redis`` / ``RedisCluster`` the host already owns: then :meth:`aclose`
    leaves that client open, since the host may still use it. ``timeout`` (seconds) makes
    the backend itself bound each operation; a host-owned client usually has its own
    socket timeout instead. ``pool_size`` admits that many operations at once, first come
    first served, each waiting at most ``pool_timeout`` seconds for its turn
    (:class:`~statekit.errors.BackendTimeoutError`); without auto-pipelining, a client
    whose pool is a ``BlockingConnectionPool`` gets this gate with the pool's size and
    timeout by default, as that pool serves its waiters in no particular order.

    Retries follow the client's ``Retry``: opening a connection is retried as it says,
    and so is a read whose connection dropped before its reply arrived (up to as many
    times, 0.1 s doubling backoff). A write is never sent twice, whatever the client's
    ``Retry``: its lost reply raises :class:`~statekit.errors.BackendUnavailableError`.
    """

    capabilities = frozenset({Capability.VERSIONS})

    def __init__(
        self,
        client: Redis | RedisCluster,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        *,
        timeout: float | None = None,
        pool_size: int | None = None,
        pool_timeout: float | None = 5.0,
        auto_pipeline: bool = True,
        owns_client: bool = False,
        url: str | None = None,
    ) -> None:
        self._client = client
        self._timeout = timeout
        pool = client.connection_pool if isinstance(client, Redis) else None
        if pool_size is None and not auto_pipeline and isinstance(pool, BlockingConnectionPool):
            pool_size, pool_timeout = pool.max_connections, pool.timeout
        self._gate = (
            None if pool_size is None else FifoGate(pool_size, pool_timeout, "Redis connection")
        )
        self._prefix = validate_key_prefix(key_prefix)
        self._owns_client = owns_client
        self._url = None if url is None else mask_password(url)
        self._cluster = isinstance(client, RedisCluster)
        self._closed = False
        self._scripts_loaded = not self._cluster
        self._scripts_lock = asyncio.Lock()
        self._pipeline: AutoPipeline | None = None
        self._send: Send = self._send_direct
        self._resends = 0  # a cluster client re-sends reads itself
        self._connections: KeptConnections | PooledConnections | None = None
        if isinstance(client, Redis):
            retry = client.get_retry()
            self._resends = 0 if retry is None else max(0, retry.get_retries())
            self._connections = (
                KeptConnections(client) if auto_pipeline else PooledConnections(client)
            )
            self._round_trip: Send = functools.partial(
                send_with_scripts, self._connections.round_trip, _SCRIPTS
            )
            if auto_pipeline:
                # A batch is bounded by the backend's timeout, else by the client's own
                # socket timeout (what bounds each of its direct calls too).
                socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
                self._pipeline = AutoPipeline(
                    self._round_trip,
                    timeout=timeout if timeout is not None else socket_timeout,
                )
                self._send = self._pipeline.execute_many

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """A backend for ``url``; cheap, no I/O (connections open on first use).

        Options (URL query or keyword, keywords win): ``key_prefix``, ``pool_size``,
        ``timeout``, ``connect_timeout``, ``retries``, ``client_name``, ``auto_pipeline``
        (standalone servers only: concurrent calls share pipelined round trips).
        """
        client, opts = build_client(url, options)
        # Without auto-pipelining, the standalone client enforces ``timeout`` on its
        # sockets and the backend admits ``pool_size`` operations at once, in arrival
        # order; with it, the backend bounds each operation by ``timeout`` itself and the
        # pipeline needs only a few connections. The cluster client gets no socket
        # timeout: redis-py's async cluster connections break under concurrent first use
        # with one, and its pool raises instead of waiting when full. So for a cluster the
        # backend bounds each operation by ``timeout`` and the operations in flight by
        # ``pool_size``.
        if isinstance(client, RedisCluster):
            return cls(
                client,
                opts.key_prefix,
                timeout=opts.timeout,
                pool_size=opts.pool_size,
                pool_timeout=opts.timeout,
                owns_client=True,
                url=url,
            )
        return cls(
            client,
            opts.key_prefix,
            timeout=opts.timeout if opts.auto_pipeline else None,
            pool_size=None if opts.auto_pipeline else opts.pool_size,
            pool_timeout=opts.timeout,
            auto_pipeline=opts.auto_pipeline,
            owns_client=True,
            url=url,
        )

    def __repr__(self) -> str:
        where = self._url if self._url is not None else f"client={type(self._client).__name__}"
        return f"RedisBackend({where!r}, key_prefix={self._prefix!r})"

    async def _timed(self, awaitable: Awaitable[Any] | Any) -> Any:
        """Await ``awaitable`` in its turn at the gate (``pool_size``), then within
        ``timeout``, when they are set.

        redis-py's client types many commands as "awaitable or plain value" (the sync
        and async clients share them), hence ``Any`` at this one boundary.
        """
        if self._gate is None:
            if self._timeout is None:
                return await awaitable
            return await asyncio.wait_for(awaitable, self._timeout)
        try:
            await self._gate.acquire()
        except BaseException:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # no place in time: it will never run
            raise
        try:
            if self._timeout is None:
                return await awaitable
            return await asyncio.wait_for(awaitable, self._timeout)
        finally:
            self._gate.release()

    # ---- sending commands -----------------------------------------------------------

    async def _send_direct(self, commands: Sequence[Command]) -> list[Any]:
        """One round trip of its own (no auto-pipelining)."""
        return cast(list[Any], await self._timed(self._round_trip(commands)))

    async def _request(self, commands: Sequence[Command], *, read: bool) -> list[Any]:
        """Send ``commands`` to a standalone server in one round trip; their replies.

        When the connection drops after the commands were sent, their outcome is unknown:
        a read is then sent again, up to the client's retry count; a write never is (it
        may have been applied: sending it again could apply it twice, or make a
        conditional write conflict with itself), so the error reaches the caller.
        Nothing is sent again after a timeout, nor when no connection could be opened
        (opening one was already retried).
        """
        resends = 0
        while True:
            try:
                return await self._send(commands)
            except NotSent:
                raise
            except redis_errors.ConnectionError:
                if not read or resends >= self._resends:
                    raise
            resends += 1
            await asyncio.sleep(_resend_delay(resends))

    async def _read(self, *command: Any) -> Any:
        """One read command, sent again if its reply is lost; its reply."""
        if self._cluster:
            return await self._cluster_call(command, None)
        (reply,) = await self._request((command,), read=True)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _write(self, key: str, *command: Any) -> Any:
        """One write command on ``key``'s node, never sent twice; its reply."""
        if self._cluster:
            return await self._cluster_call(command, key)
        (reply,) = await self._request((command,), read=False)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _cluster_call(self, command: Command, write_key: str | None) -> Any:
        """One command on a cluster, ``EVALSHA`` included.

        A read goes through the cluster client's own retries (which re-map the cluster on
        a connection error). A write is sent to the node of ``write_key`` explicitly, which
        makes redis-py send it once: a ``MOVED`` or ``ASK`` reply (the command did not
        run) is still followed.
        """
        cluster = cast(RedisCluster, self._client)
        await self._load_scripts()
        options: dict[str, Any] = {}
        if write_key is not None:
            await cluster.initialize()  # a no-op unless a failure asked for a new map
            options["target_nodes"] = cluster.get_node_from_key(write_key)
        try:
            return await self._timed(cluster.execute_command(*command, **options))
        except redis_errors.NoScriptError:
            # The script did not run: load it (a failover, SCRIPT FLUSH) and send once more.
            await self._timed(cluster.script_load(_SCRIPTS[command[1]]))
            return await self._timed(cluster.execute_command(*command, **options))

    async def _load_scripts(self) -> None:
        """Load every script on every primary of a cluster, once, up front.

        redis-py's cluster client misroutes EVALSHA when many calls hit NOSCRIPT at once
        (MOVED replies, then reconnect storms), so NOSCRIPT is kept for the rare node that
        loses its scripts later (failover, SCRIPT FLUSH).
        """
        if not self._scripts_loaded:
            async with self._scripts_lock:
                if not self._scripts_loaded:
                    for script in _SCRIPTS.values():
                        await self._timed(self._client.script_load(script))
                    self._scripts_loaded = True

    # ---- keys ---------------------------------------------------------------------

    def _keys(self, scope_key: str) -> tuple[str, str, str, str]:
        """Value hash, meta hash, context and index of a scope (see the module doc)."""
        value_key = f"{self._prefix}{{{scope_key}}}"
        return value_key, value_key + ":meta", value_key + ":ctx", value_key + ":idx"

    def _scope_of(self, value_key: str) -> str:
        return value_key[len(self._prefix) + 1 : -1]

    # ---- reads --------------------------------------------------------------------

    async def get(self, scope_key: str, state_key: str) -> str | None:
        with _mapped_errors():
            raw = await self._read("HGET", f"{self._prefix}{{{scope_key}}}", state_key)
        return None if raw is None else _text(raw)

    async def get_versioned(self, scope_key: str, state_key: str) -> tuple[str | None, int]:
        value_key, meta_key, _, _ = self._keys(scope_key)
        with _mapped_errors():
            raw, meta = await self._read(
                "EVALSHA", _GET_VERSIONED_SHA, 2, value_key, meta_key, state_key
            )
        if raw is None or meta is None:
            return None, 0
        return _text(raw), int(_text(meta).split(":", 1)[0])

    async def read_scopes(self, scope_keys: Sequence[str]) -> dict[str, dict[str, str]]:
        unique = list(dict.fromkeys(scope_keys))
        if not unique:
            return {}
        commands = [("HGETALL", f"{self._prefix}{{{scope_key}}}") for scope_key in unique]
        with _mapped_errors():
            if self._cluster:
                async with self._client.pipeline(transaction=False) as pipe:
                    for command in commands:
                        pipe.execute_command(*command)
                    replies = await self._timed(pipe.execute())
            else:
                replies = _raise_errors(await self._request(commands, read=True))
        return {scope_key: _pairs(reply) for scope_key, reply in zip(unique, replies, strict=True)}

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
        with _mapped_errors():
            # A read, though it may rebuild the index: sending it again rebuilds the same.
            keys = await self._read(
                "EVALSHA", _LIST_SHA, 2, meta_key, index_key, low, high, limit + 1
            )
        keys = [_text(k) for k in keys]
        return keys[:limit], len(keys) > limit

    async def iter_entries(self) -> AsyncIterator[StateEntry]:
        batch: list[str] = []
        with _mapped_errors():
            async for raw in self._scan(glob_escape(self._prefix) + "{*}"):
                batch.append(_text(raw))
                if len(batch) >= _SCAN_BATCH:
                    for entry in await self._read_entries(batch):
                        yield entry
                    batch = []
            if batch:
                for entry in await self._read_entries(batch):
                    yield entry

    async def _scan(self, pattern: str) -> AsyncIterator[bytes | str]:
        """``SCAN MATCH pattern`` (every primary of a cluster), each step timed."""
        keys = aiter(self._client.scan_iter(match=pattern, count=_SCAN_BATCH))
        while (key := await self._timed(anext(keys, None))) is not None:
            yield key

    async def _read_entries(self, value_keys: list[str]) -> list[StateEntry]:
        async with self._client.pipeline(transaction=False) as pipe:
            for value_key in value_keys:
                pipe.hgetall(value_key)
                pipe.hgetall(value_key + ":meta")
                pipe.get(value_key + ":ctx")
            replies = await self._timed(pipe.execute())
        entries = []
        for i, value_key in enumerate(value_keys):
            values, metas, ctx = replies[3 * i : 3 * i + 3]
            if ctx is None:
                continue  # deleted between SCAN and read
            context = ScopeContext(**json.loads(ctx))
            meta_by_key = {_text(k): _text(v) for k, v in metas.items()}
            for raw_key, raw_value in values.items():
                state_key = _text(raw_key)
                meta = meta_by_key.get(state_key)
                if meta is None:
                    continue
                version, created, updated = meta.split(":")
                entries.append(
                    StateEntry(
                        scope_key=self._scope_of(value_key),
                        state_key=state_key,
                        value_json=_text(raw_value),
                        context=context,
                        created_at=_timestamp(created),
                        updated_at=_timestamp(updated),
                        version=int(version),
                    )
                )
        return entries

    # ---- writes -------------------------------------------------------------------

    async def set(
        self,
        scope_key: str,
        state_key: str,
        value_json: str,
        context: ScopeContext,
        expected_version: int | None = None,
    ) -> int:
        keys = self._keys(scope_key)
        expected = "" if expected_version is None else str(expected_version)
        with _mapped_errors():
            reply = await self._write(
                keys[0],
                "EVALSHA",
                _WRITE_SHA,
                4,
                *keys,
                expected,
                state_key,
                value_json,
                _context_json(context),
            )
        if reply[0] == -1:
            assert expected_version is not None  # the script only refuses conditional sets
            raise VersionConflictError(scope_key, state_key, expected_version, int(reply[1]))
        return int(reply[0])

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        """One ``EVALSHA`` for the whole batch: one round trip, atomic.

        On a cluster a script may only touch one slot, so the batch runs as one atomic
        script per scope, the scopes concurrently (atomic per scope, not across scopes).
        """
        if not writes:
            return
        with _mapped_errors():
            if not self._cluster:
                await self._write("", *self._write_command(writes))
                return
            by_scope: dict[str, list[StateWrite]] = {}
            for write in writes:
                by_scope.setdefault(write.scope_key, []).append(write)
            await asyncio.gather(
                *(
                    self._write(self._keys(scope_key)[0], *self._write_command(group))
                    for scope_key, group in by_scope.items()
                )
            )

    def _write_command(self, writes: Sequence[StateWrite]) -> Command:
        """The ``EVALSHA`` of the write script for ``writes``, unconditional."""
        keys: list[str] = []
        args: list[str] = [""]
        for write in writes:
            keys.extend(self._keys(write.scope_key))
            args.extend((write.state_key, write.value_json, _context_json(write.context)))
        return ("EVALSHA", _WRITE_SHA, len(keys), *keys, *args)

    async def delete(self, scope_key: str, state_key: str) -> bool:
        keys = self._keys(scope_key)
        with _mapped_errors():
            removed = await self._write(keys[0], "EVALSHA", _DELETE_SHA, 4, *keys, state_key)
        return bool(removed)

    async def clear(self) -> None:
        """``SCAN`` + ``UNLINK`` in batches of this prefix's keys only (never ``KEYS``).

        ``UNLINK`` is a write like any other: never sent twice, as a second one could
        remove a key written again in between.
        """
        batch: list[str] = []
        with _mapped_errors():
            async for key in self._scan(glob_escape(self._prefix) + "{*"):
                batch.append(_text(key))
                if len(batch) >= _SCAN_BATCH:
                    await self._unlink(batch)
                    batch = []
            if batch:
                await self._unlink(batch)

    async def _unlink(self, keys: list[str]) -> None:
        if not self._cluster:
            await self._write("", "UNLINK", *keys)
            return
        # A cluster command may only name keys of one slot: one UNLINK per scope.
        by_slot: dict[str, list[str]] = {}
        for key in keys:
            by_slot.setdefault(key[key.index("{") : key.index("}") + 1], []).append(key)
        await asyncio.gather(
            *(self._write(group[0], "UNLINK", *group) for group in by_slot.values())
        )

    # ---- lifecycle ----------------------------------------------------------------

    async def describe(self) -> BackendInfo:
        """Server version and layout, plus a warning for the eviction policy: any policy
        but ``noeviction`` lets Redis silently drop state under memory pressure."""
        with _mapped_errors():
            info: dict[str, Any] = await self._timed(self._client.info())
        if "redis_version" not in info:  # a cluster answers per node
            info = next(iter(info.values()))
        policy = str(info.get("maxmemory_policy", "unknown"))
        warnings: tuple[str, ...] = ()
        if policy not in ("noeviction", "unknown"):
            warnings = (f"maxmemory-policy {policy} may evict state",)
        return BackendInfo(
            backend="redis-cluster" if self._cluster else "redis",
            server_version=str(info.get("redis_version", "unknown")),
            layout="ok",
            namespace=self._prefix,
            url=self._url,
            warnings=warnings,
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pipeline is not None:
            await self._pipeline.aclose()
        if self._connections is not None:
            with _mapped_errors():
                await self._connections.aclose()
        if self._owns_client:
            with _mapped_errors():
                await self._client.aclose()
