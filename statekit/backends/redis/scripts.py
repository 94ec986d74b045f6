"""The Lua scripts of the Redis backend, and the SHA1 each is called by (``EVALSHA``).

Every write and delete is one script call that keeps a scope's four keys (value hash,
meta hash, context, index: see :mod:`statekit.backends.redis`) consistent atomically. A
server that does not know a script (a restart, ``SCRIPT FLUSH``, a new primary after a
failover: scripts are not replicated) answers ``NOSCRIPT``; the transports then load it
from :data:`SCRIPTS` and send the call once more, which is safe as the script never ran.

Expiry: a scope's deadline lives on all four of its keys, one ``PEXPIREAT`` each, set in
the script of the write that moves it (:data:`WRITE_TTL_SHA`) or of the refresh on read
(:data:`REFRESH_SHA`), so they always expire at the same millisecond. The scripts take
"now" from the server's ``TIME``: every client sees one clock, whatever its host's. Redis
keeps a key while its clock is at or before the key's expire time and drops it after, so
a deadline ``D`` (the first millisecond the scope is absent, as the contract has it) is
stored as expire time ``D - 1``.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "DELETE_SHA",
    "ENTRIES_SHA",
    "GET_VERSIONED_SHA",
    "LIST_SHA",
    "REFRESH_SHA",
    "SCRIPTS",
    "WRITE_SHA",
    "WRITE_TTL_SHA",
]

# KEYS: (value hash, meta hash, context key, index) per write. ARGV[1]: expected version or ""
# (only with a single write); then (field, value JSON, context JSON) per write.
# Returns the new versions, or {-1, actual} when the expected version differs.
# The context is written (if absent) only with a new key: an existing key means the scope
# and its context exist, and a SET per update cost about a tenth of the script.
_WRITE_TEMPLATE = """
local t = redis.call('TIME')
local us = t[2]
local now = t[1] .. string.sub('00000', #us) .. us
--[[deadline]]
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
  --[[expire]]
end
--[[after]]
return versions
"""

_WRITE = (
    _WRITE_TEMPLATE.replace("--[[deadline]]\n", "")
    .replace("  --[[expire]]\n", "")
    .replace("--[[after]]\n", "")
)

# The write with expiry: the same, with one more ARGV per write after all the others
# (ARGV[3 * n + 2 + i] for write i of n): its ttl in milliseconds, "never" (no deadline)
# or "" (the deadline left as it is). A scope's deadline is set once, after all the
# writes, from its last write with a ttl (the one that wins when each moves it in turn),
# so the keys any of them created get it too; never after a refused write.
_WRITE_TTL = (
    _WRITE_TEMPLATE.replace(
        "--[[deadline]]\n",
        """local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(us) / 1000)
local n = #KEYS / 4
local ttls = {}
""",
    )
    .replace(
        "  --[[expire]]\n",
        """  local ttl = ARGV[3 * n + 2 + i]
  if ttl ~= '' then ttls[vkey] = ttl end
""",
    )
    .replace(
        "--[[after]]\n",
        """for i = 0, n - 1 do
  local vkey = KEYS[4 * i + 1]
  local ttl = ttls[vkey]
  if ttl then
    ttls[vkey] = nil
    local mkey, ckey, ikey = KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
    if ttl == 'never' then
      redis.call('PERSIST', vkey)
      redis.call('PERSIST', mkey)
      redis.call('PERSIST', ckey)
      redis.call('PERSIST', ikey)
    else
      local at = string.format('%d', ms + tonumber(ttl) - 1)
      redis.call('PEXPIREAT', vkey, at)
      redis.call('PEXPIREAT', mkey, at)
      redis.call('PEXPIREAT', ckey, at)
      redis.call('PEXPIREAT', ikey, at)
    end
  end
end
""",
    )
)

# KEYS: a scope's four keys. ARGV[1]: ttl in milliseconds, or "never". Refresh on read:
# XX moves only a deadline a key already has, so a scope without one keeps none, and a
# key that is absent (or expired) stays absent.
_REFRESH = """
if ARGV[1] == 'never' then
  for i = 1, #KEYS do redis.call('PERSIST', KEYS[i]) end
  return 0
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = string.format('%d', ms + tonumber(ARGV[1]) - 1)
for i = 1, #KEYS do redis.call('PEXPIREAT', KEYS[i], at, 'XX') end
return 0
"""

# KEYS: value hash, meta hash, context key. A whole scope at one instant (export):
# values, metas, context and the expire time (-1: none, -2: gone).
_ENTRIES = """
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),
  redis.call('GET', KEYS[3]), redis.call('PEXPIRETIME', KEYS[1])}
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
# before the index existed, or edited by hand, lists the same as any other. The rebuilt
# index takes the meta hash's deadline, so the scope still expires as one.
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
  local at = redis.call('PEXPIRETIME', KEYS[1])
  if at > 0 then redis.call('PEXPIREAT', KEYS[2], at) end
end
return redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
"""

# Value and version read together, so they always belong to the same write.
_GET_VERSIONED = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

#: SHA1 -> script text, for ``SCRIPT LOAD`` after a ``NOSCRIPT`` reply.
SCRIPTS: dict[str, str] = {
    hashlib.sha1(s.encode()).hexdigest(): s
    for s in (_WRITE, _DELETE, _GET_VERSIONED, _LIST, _WRITE_TTL, _REFRESH, _ENTRIES)
}
WRITE_SHA, DELETE_SHA, GET_VERSIONED_SHA, LIST_SHA, WRITE_TTL_SHA, REFRESH_SHA, ENTRIES_SHA = (
    SCRIPTS
)
