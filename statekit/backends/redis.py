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
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from statekit.backends.base import Capability, ScopeContext, StateEntry, StateWrite
from statekit.backends.redis_pipeline import AutoPipeline
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
_WRITE = """
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
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
  end
  version = version + 1
  redis.call('HSET', vkey, field, ARGV[3 * i + 3])
  redis.call('HSET', mkey, field, version .. ':' .. created .. ':' .. now)
  redis.call('SET', ckey, ARGV[3 * i + 4], 'NX')
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

_GLOB_SPECIAL = frozenset("*?[]\\")
_SCRIPTS = (_WRITE, _DELETE, _GET_VERSIONED, _LIST)
ScriptArg = str | bytes | int
_SCAN_BATCH = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _timestamp(micros: str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


@functools.lru_cache(maxsize=4096)
def _context_json(context: ScopeContext) -> str:
    """The context as stored in ``P{S}:ctx``; cached, as a runner writes with few contexts
    and ``dataclasses.asdict`` would otherwise dominate the cost of a write."""
    return json.dumps(context.as_dict(), separators=(",", ":"))


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Translate redis-py exceptions into statekit's error tree at the boundary."""
    try:
        yield
    except (redis_errors.TimeoutError, asyncio.TimeoutError) as exc:
        raise BackendTimeoutError(f"Redis did not answer in time: {exc}") from exc
    except (redis_errors.ConnectionError, redis_errors.ClusterDownError) as exc:
        raise BackendUnavailableError(f"Redis is unavailable: {exc}") from exc
    except (redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
        raise StateBackendError(f"Redis error: {exc}") from exc


class RedisBackend:
    """``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``: state in Redis hashes.

    Build it with :meth:`from_url` (the backend owns and closes its client), or pass a
    ``redis.asyncio.Redis`` / ``RedisCluster`` the host already owns: then :meth:`aclose`
    leaves that client open, since the host may still use it. ``timeout`` (seconds) and
    ``pool_size`` make the backend itself bound each operation and the operations in
    flight; a host-owned client usually has its own socket timeout and pool instead.
    """

    capabilities = frozenset({Capability.VERSIONS})

    def __init__(
        self,
        client: Redis | RedisCluster,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        *,
        timeout: float | None = None,
        pool_size: int | None = None,
        auto_pipeline: bool = True,
        owns_client: bool = False,
        url: str | None = None,
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._gate = None if pool_size is None else asyncio.Semaphore(pool_size)
        self._prefix = validate_key_prefix(key_prefix)
        self._owns_client = owns_client
        self._url = None if url is None else mask_password(url)
        self._cluster = isinstance(client, RedisCluster)
        self._closed = False
        # AsyncScript runs EVALSHA and loads the script on NOSCRIPT by itself; it is typed
        # for Redis only, but RedisCluster routes EVALSHA by its first key just the same.
        scripts_client = cast(Redis, client)
        self._write = AsyncScript(scripts_client, _WRITE)
        self._delete = AsyncScript(scripts_client, _DELETE)
        self._get_versioned = AsyncScript(scripts_client, _GET_VERSIONED)
        self._list = AsyncScript(scripts_client, _LIST)
        self._scripts_loaded = not self._cluster
        self._scripts_lock = asyncio.Lock()
        self._pipeline: AutoPipeline | None = None
        if auto_pipeline and isinstance(client, Redis):
            # A batch is bounded by the backend's timeout, else by the client's own
            # socket timeout (what bounds each of its direct calls too).
            socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
            self._pipeline = AutoPipeline(
                client,
                timeout=timeout if timeout is not None else socket_timeout,
                scripts=_SCRIPTS,
            )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        """A backend for ``url``; cheap, no I/O (connections open on first use).

        Options (URL query or keyword, keywords win): ``key_prefix``, ``pool_size``,
        ``timeout``, ``connect_timeout``, ``retries``, ``client_name``, ``auto_pipeline``
        (standalone servers only: concurrent calls share pipelined round trips).
        """
        client, opts = build_client(url, options)
        # The standalone client waits for a free pooled connection and, without
        # auto-pipelining, enforces ``timeout`` on its sockets; with it, the backend bounds
        # each operation by ``timeout`` itself. The cluster client gets neither: redis-py's
        # async cluster connections break under concurrent first use with a socket
        # timeout, and its pool raises instead of waiting when full. So for a cluster the
        # backend bounds each operation by ``timeout`` and the operations in flight by
        # ``pool_size``.
        if isinstance(client, RedisCluster):
            return cls(
                client,
                opts.key_prefix,
                timeout=opts.timeout,
                pool_size=opts.pool_size,
                owns_client=True,
                url=url,
            )
        return cls(
            client,
            opts.key_prefix,
            timeout=opts.timeout if opts.auto_pipeline else None,
            auto_pipeline=opts.auto_pipeline,
            owns_client=True,
            url=url,
        )

    def __repr__(self) -> str:
        where = self._url if self._url is not None else f"client={type(self._client).__name__}"
        return f"RedisBackend({where!r}, key_prefix={self._prefix!r})"

    async def _timed(self, awaitable: Awaitable[Any] | Any) -> Any:
        """Await ``awaitable`` within ``timeout`` and ``pool_size`` when they are set.

        redis-py's client types many commands as "awaitable or plain value" (the sync
        and async clients share them), hence ``Any`` at this one boundary.
        """
        if self._timeout is None and self._gate is None:
            return await awaitable
        return await asyncio.wait_for(self._gated(awaitable), self._timeout)

    async def _gated(self, awaitable: Awaitable[Any]) -> Any:
        if self._gate is None:
            return await awaitable
        try:
            await self._gate.acquire()
        except BaseException:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # timed out waiting: it will never run
            raise
        try:
            return await awaitable
        finally:
            self._gate.release()

    async def _run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> Any:
        """Run a script; on a cluster, load every script on every primary first.

        redis-py's cluster client misroutes EVALSHA when many calls hit NOSCRIPT at once
        (MOVED replies, then reconnect storms), so the scripts are loaded up front, once.
        A node that loses them later (failover, SCRIPT FLUSH) still gets them reloaded on
        NOSCRIPT by AsyncScript.
        """
        if not self._scripts_loaded:
            async with self._scripts_lock:
                if not self._scripts_loaded:
                    for script_text in _SCRIPTS:
                        await self._client.script_load(script_text)
                    self._scripts_loaded = True
        return await script(keys=keys, args=args)

    async def _script(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[ScriptArg]
    ) -> Any:
        """One ``EVALSHA``: auto-pipelined when enabled, else a direct call."""
        if self._pipeline is not None:
            return await self._pipeline.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        return await self._timed(self._run(script, keys, args))

    # ---- keys ---------------------------------------------------------------------

    def _keys(self, scope_key: str) -> tuple[str, str, str, str]:
        """Value hash, meta hash, context and index of a scope (see the module doc)."""
        value_key = f"{self._prefix}{{{scope_key}}}"
        return value_key, value_key + ":meta", value_key + ":ctx", value_key + ":idx"

    def _scope_of(self, value_key: str) -> str:
        return value_key[len(self._prefix) + 1 : -1]

    # ---- reads --------------------------------------------------------------------

    async def get(self, scope_key: str, state_key: str) -> str | None:
        value_key = f"{self._prefix}{{{scope_key}}}"
        with _mapped_errors():
            if self._pipeline is not None:
                raw = await self._pipeline.execute("HGET", value_key, state_key)
            else:
                raw = await self._timed(self._client.hget(value_key, state_key))
        return None if raw is None else _text(raw)

    async def get_versioned(self, scope_key: str, state_key: str) -> tuple[str | None, int]:
        value_key, meta_key, _, _ = self._keys(scope_key)
        with _mapped_errors():
            raw, meta = await self._script(self._get_versioned, [value_key, meta_key], [state_key])
        if raw is None or meta is None:
            return None, 0
        return _text(raw), int(_text(meta).split(":", 1)[0])

    async def read_scopes(self, scope_keys: Sequence[str]) -> dict[str, dict[str, str]]:
        unique = list(dict.fromkeys(scope_keys))
        if not unique:
            return {}
        with _mapped_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                for scope_key in unique:
                    pipe.hgetall(self._keys(scope_key)[0])
                replies = await self._timed(pipe.execute())
        return {
            scope_key: {_text(k): _text(v) for k, v in reply.items()}
            for scope_key, reply in zip(unique, replies, strict=True)
        }

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
            keys = await self._script(self._list, [meta_key, index_key], [low, high, limit + 1])
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
        expected = "" if expected_version is None else str(expected_version)
        args = [expected, state_key, value_json, _context_json(context)]
        with _mapped_errors():
            reply = await self._script(self._write, list(self._keys(scope_key)), args)
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
                await self._script(self._write, *self._write_args(writes, ""))
                return
            by_scope: dict[str, list[StateWrite]] = {}
            for write in writes:
                by_scope.setdefault(write.scope_key, []).append(write)
            groups = (self._run(self._write, *self._write_args(g, "")) for g in by_scope.values())
            await self._timed(asyncio.gather(*groups))

    def _write_args(
        self, writes: Sequence[StateWrite], expected: str
    ) -> tuple[list[str], list[str]]:
        """KEYS and ARGV of the write script for ``writes``."""
        keys: list[str] = []
        args: list[str] = [expected]
        for write in writes:
            keys.extend(self._keys(write.scope_key))
            args.extend((write.state_key, write.value_json, _context_json(write.context)))
        return keys, args

    async def delete(self, scope_key: str, state_key: str) -> bool:
        with _mapped_errors():
            removed = await self._script(self._delete, list(self._keys(scope_key)), [state_key])
        return bool(removed)

    async def clear(self) -> None:
        """``SCAN`` + ``UNLINK`` in batches of this prefix's keys only (never ``KEYS``)."""
        batch: list[bytes | str] = []
        with _mapped_errors():
            async for key in self._scan(glob_escape(self._prefix) + "{*"):
                batch.append(key)
                if len(batch) >= _SCAN_BATCH:
                    await self._timed(self._client.unlink(*batch))
                    batch = []
            if batch:
                await self._timed(self._client.unlink(*batch))

    # ---- lifecycle ----------------------------------------------------------------

    async def describe(self) -> dict[str, str]:
        """Server version and layout, plus the eviction policy: any policy but
        ``noeviction`` lets Redis silently drop state under memory pressure."""
        with _mapped_errors():
            info: dict[str, Any] = await self._timed(self._client.info())
        if "redis_version" not in info:  # a cluster answers per node
            info = next(iter(info.values()))
        policy = str(info.get("maxmemory_policy", "unknown"))
        layout = f"ok: hash per scope {self._prefix}{{scope_key}} (+ :meta, :ctx, :idx)"
        if policy not in ("noeviction", "unknown"):
            layout += f"; WARNING: maxmemory-policy {policy} may evict state"
        return {
            "backend": "redis-cluster" if self._cluster else "redis",
            "server_version": str(info.get("redis_version", "unknown")),
            "layout": layout,
            "key_prefix": self._prefix,
            "maxmemory_policy": policy,
        }

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pipeline is not None:
            await self._pipeline.aclose()
        if self._owns_client:
            with _mapped_errors():
                await self._client.aclose()
