"""The Lua scripts of the Redis backend, and the SHA1 each is called by (``EVALSHA``).

Every write and delete is one script call that keeps a scope's four keys (value hash,
meta hash, context, index: see :mod:`statekit.backends.redis`) consistent atomically. A
server that does not know a script (a restart, ``SCRIPT FLUSH``, a new primary after a
failover: scripts are not replicated) answers ``NOSCRIPT``; the transports then load it
from :data:`SCRIPTS` and send the call once more, which is safe as the script never ran.

Expiry: a scope's deadline lives on all four of its keys, one ``PEXPIREAT`` each, set in
the script of the write that moves it (:data:`WRITE_ONE_TTL_SHA`, :data:`WRITE_TTL_SHA`
for a batch) or of the refresh on read (:data:`REFRESH_SHA`), so they always expire at
the same millisecond. The scripts take
"now" from the server's ``TIME``: every client sees one clock, whatever its host's. Redis
keeps a key while its clock is at or before the key's expire time and drops it after, so
a deadline ``D`` (the first millisecond the scope is absent, as the contract has it) is
stored as expire time ``D - 1``.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "ADOPT_SHA",
    "CLAIM_MS",
    "DELETE_SHA",
    "ENTRIES_SHA",
    "ERASE_SHA",
    "GET_VERSIONED_SHA",
    "INDEX_ADD_SHA",
    "INDEX_REMOVE_SHA",
    "LIST_SHA",
    "REFRESH_SHA",
    "SCOPE_STATE_SHA",
    "SCRIPTS",
    "WRITE_EACH_SHA",
    "WRITE_EACH_TTL_SHA",
    "WRITE_ONE_SHA",
    "WRITE_ONE_TTL_SHA",
    "WRITE_SHA",
    "WRITE_TTL_SHA",
]

#: How long a claimed scope's context lives (ms) if the scope is never created (the client
#: that claimed it stopped before its write): it then counts as absent and goes by itself.
CLAIM_MS = 600_000

# KEYS: (value hash, meta hash, context key, index) per write. ARGV[1]: expected version or ""
# (only with a single write); then (field, value JSON, context argument) per write.
# Returns the new versions, {-1, actual} when the expected version differs, or
# {-2, (write position, stored context) ...} when the batch would create a scope whose
# identity is not yet indexed: nothing is written then (see "Creating a scope" below).
#
# Creating a scope: a scope (its value hash) is created only under a stored context
# carrying a token ("<token>:<context JSON>") that the write presents as its context
# argument ("<token>:<context JSON>"), which the client does only after adding the scope
# to its identity index sets with that token (:mod:`~statekit.backends.redis.identity`).
# Otherwise the context argument is the plain JSON, and the first such write claims the
# scope: it stores the context with a fresh token (the server's clock, in microseconds),
# for a grace period only, and the batch is refused with the stored context. A write to
# a scope that exists (the common case) needs none of this: the first write to each
# scope reads its meta before any write (and reuses it), and a key that exists says the
# scope does; only a new key asks EXISTS. A conditional write (expected version not 0)
# never creates a scope: it conflicts.
_WRITE_TEMPLATE = """
local t = redis.call('TIME')
local us = t[2]
local now = t[1] .. string.sub('00000', #us) .. us
--[[deadline]]
local expected = ARGV[1]
local n = #KEYS / 4
local first, metas = nil, nil
if expected == '' or expected == '0' then
  local seen, persist, refused
  if n > 1 then seen, metas = {}, {} end
  for i = 0, n - 1 do
    local vkey = KEYS[4 * i + 1]
    if n == 1 or not seen[vkey] then
      local meta = redis.call('HGET', KEYS[4 * i + 2], ARGV[3 * i + 2])
      if n == 1 then first = meta else seen[vkey], metas[i] = true, meta end
      if not meta and redis.call('EXISTS', vkey) == 0 then
        local ckey, arg = KEYS[4 * i + 3], ARGV[3 * i + 4]
        local ctx = redis.call('GET', ckey)
        local token = string.match(arg, '^(%d+):')
        if ctx and token and string.sub(ctx, 1, #token + 1) == token .. ':' then
          persist = persist or {}
          persist[#persist + 1] = ckey
        else
          if not ctx or string.sub(ctx, 1, 1) == '{' then
            ctx = now .. ':' .. (token and string.sub(arg, #token + 2) or arg)
            redis.call('SET', ckey, ctx, 'PX', CLAIM_MS)
          end
          refused = refused or {-2}
          refused[#refused + 1] = i
          refused[#refused + 1] = ctx
        end
      end
    end
  end
  if refused then return refused end
  if persist then
    for j = 1, #persist do redis.call('PERSIST', persist[j]) end
  end
end
local versions = {}
for i = 0, n - 1 do
  local vkey, mkey, ckey, ikey = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  local field = ARGV[3 * i + 2]
  local version, created = 0, now
  local meta = first
  if metas then meta = metas[i] end
  if meta == nil then meta = redis.call('HGET', mkey, field) end
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
  versions[#versions + 1] = version
  --[[expire]]
end
--[[after]]
return versions
""".replace("CLAIM_MS", str(CLAIM_MS))

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

# The write of one entry, the shape of nearly every write (``RedisBackend.set``): the same
# rules as the write above for a batch of one, in fewer steps. The common case, an entry
# that exists, is HGET, TIME, HSET, HSET and nothing else; a new key of a live scope adds
# EXISTS and ZADD, a new scope the claim. As a Lua function ``write(k, a)`` of the write
# whose keys follow KEYS[k] and arguments ARGV[a]: KEYS (value hash, meta hash, context
# key, index), ARGV (field, value JSON, context argument, expected version or "") and,
# with expiry, its ttl ("never" or milliseconds). Returns the new version (a number, not
# a table: the reply of nearly every write, the cheapest to make and to read), else
# {-1, actual} or {-2, 0, stored context} (claimed, nothing written), as the write above
# for one write.
# (VKEY ... CONTEXT: how the write finds its keys and context argument, see _ONE_FORMS.)
_ONE_TEMPLATE = """
local t = redis.call('TIME')
local us = t[2]
local now = t[1] .. string.sub('00000', #us) .. us
--[[deadline]]
local function write(k, a)
  local vkey = VKEY
  local mkey, field, expected = MKEY, ARGV[a + 1], ARGV[a + 4]
  local meta = redis.call('HGET', mkey, field)
  local version, created = 0, now
  if meta then
    local v, c = string.match(meta, '^(%d+):(%d+):')
    version, created = tonumber(v), c
  end
  if expected ~= '' and tonumber(expected) ~= version then
    return {-1, version}
  end
  if not meta then
    if redis.call('EXISTS', vkey) == 0 then
      local ckey, arg = CKEY, CONTEXT
      local ctx = redis.call('GET', ckey)
      local token = string.match(arg, '^(%d+):')
      if ctx and token and string.sub(ctx, 1, #token + 1) == token .. ':' then
        redis.call('PERSIST', ckey)
      else
        if not ctx or string.sub(ctx, 1, 1) == '{' then
          ctx = now .. ':' .. (token and string.sub(arg, #token + 2) or arg)
          redis.call('SET', ckey, ctx, 'PX', CLAIM_MS)
        end
        return {-2, 0, ctx}
      end
    end
    redis.call('ZADD', IKEY, 0, field)
  end
  version = version + 1
  redis.call('HSET', vkey, field, ARGV[a + 2])
  redis.call('HSET', mkey, field, version .. ':' .. created .. ':' .. now)
  --[[expire]]
  return version
end
""".replace("CLAIM_MS", str(CLAIM_MS))

_ONE_EXPIRY = (
    """local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(us) / 1000)
""",
    """  local ttl = ARGV[a + 5]
  if ttl == 'never' then
    redis.call('PERSIST', vkey)
    redis.call('PERSIST', mkey)
    redis.call('PERSIST', CKEY)
    redis.call('PERSIST', IKEY)
  elseif ttl ~= '' then
    local at = string.format('%d', ms + tonumber(ttl) - 1)
    redis.call('PEXPIREAT', vkey, at)
    redis.call('PEXPIREAT', mkey, at)
    redis.call('PEXPIREAT', CKEY, at)
    redis.call('PEXPIREAT', IKEY, at)
  end
""",
)

# How a write finds its keys and its context argument. Alone: its four keys are KEYS, its
# context ARGV[a + 3]. Joined (the script below): each write sends its value hash only,
# the scope's other keys being named after it (see the key layout in
# :mod:`statekit.backends.redis`), and in ARGV[a + 3] the position in ARGV of its context:
# the call sends each distinct context once, after all the writes' arguments. A call of
# a hundred writes sends a fifth of the bytes it would with each write's four keys and
# context, which the client packs and the server reads. Joined calls are sent only to a
# single server (standalone, or a Sentinel's primary), never to a Cluster, whose nodes
# need every key of a script in KEYS; a Cluster's writes go alone.
_ONE_FORMS = {
    "alone": {
        "VKEY": "KEYS[k + 1]",
        "MKEY": "KEYS[k + 2]",
        "CKEY": "KEYS[k + 3]",
        "IKEY": "KEYS[k + 4]",
        "CONTEXT": "ARGV[a + 3]",
    },
    "joined": {
        "VKEY": "KEYS[k + 1]",
        "MKEY": "vkey .. ':meta'",
        "CKEY": "vkey .. ':ctx'",
        "IKEY": "vkey .. ':idx'",
        "CONTEXT": "ARGV[tonumber(ARGV[a + 3])]",
    },
}

# Several independent writes of one entry each, in one call: what the auto-pipeline sends
# for the single writes of concurrent callers that go out side by side (see
# :mod:`~statekit.backends.redis.coalesce`). KEYS: each write's value hash; ARGV: each
# write's arguments (as alone, its context argument replaced by the position of the
# context), then the distinct contexts. Each runs as it would alone, in call order, and
# has its own reply, an error reply included: one write's error (a key of another type)
# is that write's only. They share the call's TIME, so the server runs one script and
# one TIME for all of them.
_EACH = """
local out = {}
for i = 0, #KEYS - 1 do
  local ok, reply = pcall(write, i, ARGS * i)
  if not ok then
    if type(reply) ~= 'table' then reply = {err = tostring(reply)} end
  end
  out[i + 1] = reply
end
return out
"""


def _one(expiry: bool, form: str, body: str) -> str:
    deadline, expire = _ONE_EXPIRY if expiry else ("", "")
    script = _ONE_TEMPLATE.replace("--[[deadline]]\n", deadline)
    script = script.replace("  --[[expire]]\n", expire)
    for name, code in _ONE_FORMS[form].items():
        script = script.replace(name, code)
    return script + body.replace("ARGS", "5" if expiry else "4")


_WRITE_ONE = _one(False, "alone", "return write(0, 0)\n")
_WRITE_ONE_TTL = _one(True, "alone", "return write(0, 0)\n")
_WRITE_EACH = _one(False, "joined", _EACH)
_WRITE_EACH_TTL = _one(True, "joined", _EACH)

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
  if removed == 1 then
    redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  else
    -- No entry removed: the context may be a new scope's claim (see .identity), kept.
    redis.call('DEL', KEYS[2], KEYS[4])
  end
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

# KEYS: (value hash, meta hash, context key, index) per scope; ARGV: the token of each
# scope's context as found. Each scope whose context still has that token (the scope the
# caller found, not one created again since) is deleted whole: its entry count, else -1.
_ERASE = """
local counts = {}
for i = 0, #KEYS / 4 - 1 do
  local token = ARGV[i + 1] .. ':'
  local ctx = redis.call('GET', KEYS[4 * i + 3])
  if ctx and string.sub(ctx, 1, #token) == token then
    counts[i + 1] = redis.call('HLEN', KEYS[4 * i + 1])
    redis.call('DEL', KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4])
  else
    counts[i + 1] = -1
  end
end
return counts
"""

# KEYS: context key. ARGV[1]: the context as read (plain JSON, a scope created before
# identity indexes). Gives it a token, keeping its lifetime, unless it changed since:
# the context as it is now (false: gone).
_ADOPT = """
local ctx = redis.call('GET', KEYS[1])
if ctx ~= ARGV[1] then return ctx end
local t = redis.call('TIME')
local us = t[2]
ctx = t[1] .. string.sub('00000', #us) .. us .. ':' .. ctx
redis.call('SET', KEYS[1], ctx, 'KEEPTTL')
return ctx
"""

# KEYS: context key, value hash. A scope as an index entry leads to it: its stored
# context and entry count, at one instant.
_SCOPE_STATE = """
return {redis.call('GET', KEYS[1]), redis.call('HLEN', KEYS[2])}
"""

# KEYS: identity index sets (one hash slot); ARGV: one member for each.
_INDEX_ADD = """
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], 0, ARGV[i]) end
return #KEYS
"""
_INDEX_REMOVE = """
local removed = 0
for i = 1, #KEYS do removed = removed + redis.call('ZREM', KEYS[i], ARGV[i]) end
return removed
"""

#: SHA1 -> script text, for ``SCRIPT LOAD`` after a ``NOSCRIPT`` reply.
SCRIPTS: dict[str, str] = {
    hashlib.sha1(s.encode()).hexdigest(): s
    for s in (
        _WRITE,
        _DELETE,
        _GET_VERSIONED,
        _LIST,
        _WRITE_TTL,
        _REFRESH,
        _ENTRIES,
        _ERASE,
        _SCOPE_STATE,
        _INDEX_ADD,
        _INDEX_REMOVE,
        _ADOPT,
        _WRITE_ONE,
        _WRITE_ONE_TTL,
        _WRITE_EACH,
        _WRITE_EACH_TTL,
    )
}
(
    WRITE_SHA,
    DELETE_SHA,
    GET_VERSIONED_SHA,
    LIST_SHA,
    WRITE_TTL_SHA,
    REFRESH_SHA,
    ENTRIES_SHA,
    ERASE_SHA,
    SCOPE_STATE_SHA,
    INDEX_ADD_SHA,
    INDEX_REMOVE_SHA,
    ADOPT_SHA,
    WRITE_ONE_SHA,
    WRITE_ONE_TTL_SHA,
    WRITE_EACH_SHA,
    WRITE_EACH_TTL_SHA,
) = SCRIPTS
