"""Redis backend: one hash per scope, every write one server-side script call.

Key layout, for a store with ``key_prefix`` ``P`` (default ``statekit:``) and a scope key
``S``; the braces make ``S`` the cluster hash tag, so all keys of a scope share one slot::

    P{S}        hash  state_key -> value JSON            (read by get / read_scopes)
    P{S}:meta   hash  state_key -> "version:created_us:updated_us"
    P{S}:ctx    string  "<token>:" and the scope's ScopeContext as JSON (set when the
                scope is created; the token ties it to its identity index entries)
    P{S}:idx    sorted set  every state_key at score 0, for listing by prefix

Timestamps are microseconds since the epoch from the server's ``TIME``. Reads of values
are plain ``HGET`` / pipelined ``HGETALL``; writes and deletes are Lua scripts
(:mod:`~statekit.backends.redis.scripts`, one ``EVALSHA`` each) that keep the four keys
consistent atomically. The index makes a listing O(log n + limit) in a scope of n keys:
members at one score sort by their bytes, and UTF-8 byte order is code-point order, the
order every backend lists in.

Expiry: a scope with a deadline has it on all four keys, as their expire time
(``PEXPIREAT``, set in the write's own script with the server's clock), so Redis drops
the whole scope at one millisecond and reclaims its memory by itself
(:mod:`~statekit.backends.redis.expiry`). A scope without a deadline has none on any key.

Erasure and access by identity: per-identity index sets, written before a scope is
created, name every scope by the fields of its identity (:mod:`~statekit.backends.redis.identity`).

A write is never sent twice: if its connection drops before the reply arrives, the
caller gets :class:`~statekit.errors.BackendUnavailableError` and the write may or may not
have been applied. A read in that situation is simply sent again.

Modules: :mod:`.backend` (the operations, written once), :mod:`.transport` (the seam, and
the standalone transport), :mod:`.cluster`, :mod:`.sentinel` (the other transports),
:mod:`.modes` (which transport a URL or client gets), :mod:`.connections` (round trips on
one server's connections), :mod:`.pipeline` (auto-pipelining), :mod:`.options` (URL and
options), :mod:`.scripts` (the Lua scripts), :mod:`.entries` (replies into entries),
:mod:`.expiry` (ttls and deadlines), :mod:`.identity` (the identity index, find and erase).
"""

from statekit.backends.redis.backend import RedisBackend, glob_escape
from statekit.backends.redis.options import DEFAULT_KEY_PREFIX

__all__ = ["DEFAULT_KEY_PREFIX", "RedisBackend", "glob_escape"]
