"""Erasure and access by identity on Redis: per-identity index sets, written before a scope.

For each identity field of a scope (see :data:`~statekit.backends.identity.IDENTITY_FIELDS`)
one sorted set names every scope with that value, for a store with ``key_prefix`` ``P``::

    P{<scope name>:<field>:<digest>}:scopes   sorted set  "<scope> <token>" at score 0

``<digest>`` is the first 32 hex digits of the value's SHA-256: ids never appear in key
names (as in scope keys), and the braces spread the sets over a cluster's hash slots. The
set of a scope and the scope itself may sit in different slots (nodes), so no script
updates both; the order of the steps keeps them right instead:

1. A write that would create a scope (its value hash is absent) *claims* it: its script
   stores the context with a fresh token (``"<token>:<JSON>"``, a grace lifetime of
   :data:`~statekit.backends.redis.scripts.CLAIM_MS`) and refuses the batch, writing
   nothing else.
2. The client adds ``"<scope> <token>"`` (:func:`index_member`) to every identity set of
   the stored context.
3. It sends the batch again presenting the stored context; the script creates the scope
   only while its context still has that token.

So a scope never exists without its index entries. A member is live when the scope's
stored context has the member's token and the scope has entries; it is stale when the
context is absent or has another token, and a stale member stays stale for good: its
token was stored before the member was added and is never stored again. Removing stale
members is therefore always safe, whoever races it; :meth:`IdentityIndex.find_scopes`
and :meth:`~IdentityIndex.erase` remove those they meet. A scope goes in one script
(its four keys, if its context still has the token found), its index entries after.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from statekit.backends.base import ScopeContext, StateEntry, StateWrite
from statekit.backends.identity import IDENTITY_FIELDS, ErasureResult, IdentityFilter, ScopeInfo
from statekit.backends.redis.boundary import ErrorBoundary
from statekit.backends.redis.entries import glob_escape, stored_context, text
from statekit.backends.redis.pipeline import Command
from statekit.backends.redis.scripts import (
    ADOPT_SHA,
    ERASE_SHA,
    INDEX_ADD_SHA,
    INDEX_REMOVE_SHA,
    SCOPE_STATE_SHA,
)
from statekit.backends.redis.transport import SCAN_BATCH, Transport
from statekit.errors import StateBackendError

__all__ = [
    "CLAIM_ATTEMPTS",
    "IdentityIndex",
    "index_key",
    "index_keys",
    "index_member",
    "parse_member",
]

#: How many times a write claims a scope before giving up (each time an erasure or an
#: expiry removed the claim between two of its steps).
CLAIM_ATTEMPTS = 5


def index_key(prefix: str, scope: str, field: str, value: str) -> str:
    """The identity set of the scopes named ``scope`` whose ``field`` is ``value``."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"{prefix}{{{scope}:{field}:{digest}}}:scopes"


def index_keys(prefix: str, context: ScopeContext) -> list[str]:
    """Every identity set a scope with this stored context belongs to (none for a scope
    name outside the four, which no filter names)."""
    fields = IDENTITY_FIELDS.get(context.scope, ())
    return [
        index_key(prefix, context.scope, name, value)
        for name in fields
        if (value := getattr(context, name)) is not None
    ]


_CODES = {"conversation": "c", "actor": "a", "subject": "s", "runner": "r"}
_NAMES = {code: name for name, code in _CODES.items()}
_STORE_KEY = re.compile(r"(conversation|actor|subject|runner):v2:([0-9a-f]{64})")


def index_member(scope_key: str, token: str) -> str:
    """The member naming a scope (with its context's token) in an identity set.

    A scope key as the store makes them (``actor:v2:<64 hex digits>``) is written in 44
    characters (the name's initial, the digest in base64url), so that a member stays
    under the 64 bytes up to which Redis keeps a small sorted set compact (a listpack);
    any other key as it is, after a ``:``.
    """
    store_key = _STORE_KEY.fullmatch(scope_key)
    if store_key is None:
        return f":{scope_key} {token}"
    digest = base64.urlsafe_b64encode(bytes.fromhex(store_key[2])).decode().rstrip("=")
    return f"{_CODES[store_key[1]]}{digest} {token}"


def parse_member(member: str) -> tuple[str, str]:
    """The scope key and token of an identity set's member."""
    ref, _, token = member.rpartition(" ")
    if ref.startswith(":"):
        return ref[1:], token
    digest = base64.urlsafe_b64decode(ref[1:] + "=").hex()
    return f"{_NAMES[ref[0]]}:v2:{digest}", token


def _grouped_script(sha: str) -> Callable[[Sequence[tuple[str, str]]], Command]:
    """The command of a script over (set, member) pairs of one hash slot."""

    def command(pairs: Sequence[tuple[str, str]]) -> Command:
        return ("EVALSHA", sha, len(pairs), *(k for k, _ in pairs), *(m for _, m in pairs))

    return command


def _first(pair: tuple[str, str]) -> str:
    return pair[0]


class IdentityIndex:
    """The :class:`~statekit.backends.identity.ErasingBackend` half of the Redis backend
    (a base of :class:`~statekit.backends.redis.RedisBackend`)."""

    _transport: Transport
    _prefix: str
    _errors: ErrorBoundary
    #: Where the last :meth:`prune_identity_index` stopped: the rest of its pass.
    _pruning: AsyncIterator[bytes | str] | None = None

    if TYPE_CHECKING:

        def _keys(self, scope_key: str) -> tuple[str, str, str, str]: ...

        async def _read_entries(self, value_keys: list[str]) -> list[StateEntry]: ...

        def _write_command(
            self, writes: Sequence[StateWrite], presented: Mapping[str, str] | None = None
        ) -> Command: ...

    # ---- writes: creating a scope -------------------------------------------------

    async def _create_group(self, writes: Sequence[StateWrite], reply: Any) -> None:
        """:meth:`_create_scopes` for a group of ``set_many`` refused with ``reply``."""
        await self._create_scopes(
            self._keys(writes[0].scope_key)[0],
            reply,
            lambda i: writes[i].scope_key,
            lambda presented: self._write_command(writes, presented),
        )

    async def _create_scopes(
        self,
        write_key: str,
        reply: Any,
        scope_at: Callable[[int], str],
        command: Callable[[Mapping[str, str]], Command],
    ) -> Any:
        """Steps 2 and 3 of the module doc after a write refused with ``reply``: the
        claimed scopes indexed, the write sent again presenting their contexts; the
        reply of the write that went through. ``scope_at(i)`` is the scope key of the
        write's ``i``-th item, ``command(presented)`` the write again."""
        presented: dict[str, str] = {}
        for _ in range(CLAIM_ATTEMPTS):
            claimed = {
                scope_at(int(position)): text(stored)
                for position, stored in zip(reply[1::2], reply[2::2], strict=True)
            }
            await self._add_members(claimed)
            presented.update(claimed)
            reply = await self._transport.write(write_key, command(presented))
            if not isinstance(reply, list) or reply[0] != -2:
                return reply
        raise StateBackendError(
            f"A new scope was claimed {CLAIM_ATTEMPTS} times and removed each time before "
            "its write (concurrent erasures?); nothing was written"
        )

    async def _add_members(self, claimed: Mapping[str, str]) -> None:
        """Each claimed scope into every identity set of its stored context."""
        pairs: list[tuple[str, str]] = []
        for scope_key, stored in claimed.items():
            token, context = stored_context(stored)
            assert token is not None  # a claim always has one
            member = index_member(scope_key, token)
            pairs += [(key, member) for key in index_keys(self._prefix, context)]
        if pairs:
            await self._transport.write_grouped(pairs, _first, _grouped_script(INDEX_ADD_SHA))

    async def _remove_members(self, pairs: Sequence[tuple[str, str]]) -> None:
        if pairs:
            await self._transport.write_grouped(pairs, _first, _grouped_script(INDEX_REMOVE_SHA))

    # ---- reads: the scopes a filter names -----------------------------------------

    async def find_scopes(self, identity: IdentityFilter) -> AsyncIterator[ScopeInfo]:
        """The live scopes ``identity`` matches, from the smallest of its identity sets
        per scope name, a page of :data:`SCAN_BATCH` members at a time, each checked
        against its stored context; stale members met are removed on the way."""
        with self._errors:
            async for page in self._pages(identity):
                for info, _ in page:
                    yield info

    async def scope_entries(self, scope_key: str) -> list[StateEntry]:
        with self._errors:
            return await self._read_entries([self._keys(scope_key)[0]])

    async def erase(self, identity: IdentityFilter) -> ErasureResult:
        """Each matching scope deleted whole by one script (if its context still has the
        token found: a scope created again since was created after the call started),
        then its index entries, a page of scopes at a time."""
        scopes = entries = 0
        by_scope: dict[str, int] = {}
        with self._errors:
            async for page in self._pages(identity):
                for info, count in await self._erase_page(page):
                    scopes, entries = scopes + 1, entries + count
                    by_scope[info.scope] = by_scope.get(info.scope, 0) + 1
        return ErasureResult(scopes, entries, by_scope)

    async def _erase_page(
        self, page: Sequence[tuple[ScopeInfo, str]]
    ) -> list[tuple[ScopeInfo, int]]:
        if not page:
            return []

        def command(group: Sequence[tuple[ScopeInfo, str]]) -> Command:
            keys = [key for info, _ in group for key in self._keys(info.scope_key)]
            return ("EVALSHA", ERASE_SHA, len(keys), *keys, *(token for _, token in group))

        replies = await self._transport.write_grouped(
            page, lambda found: self._keys(found[0].scope_key)[0], command
        )
        erased: list[tuple[ScopeInfo, int]] = []
        members: list[tuple[str, str]] = []
        for group, counts in replies:
            for (info, token), count in zip(group, counts, strict=True):
                if int(count) < 0:
                    continue  # gone, or created again since it was found
                erased.append((info, int(count)))
                member = index_member(info.scope_key, token)
                members += [(key, member) for key in index_keys(self._prefix, info.context)]
        await self._remove_members(members)
        return [(info, count) for info, count in erased if count > 0]

    async def _pages(self, identity: IdentityFilter) -> AsyncIterator[list[tuple[ScopeInfo, str]]]:
        """Pages of the live scopes ``identity`` matches, each with its token."""
        if not identity.fields:
            raise ValueError("An identity filter needs at least one field besides the scope")
        for key in await self._smallest_sets(identity):
            low = "-"
            while True:
                raw = await self._transport.read(
                    ("ZRANGEBYLEX", key, low, "+", "LIMIT", 0, SCAN_BATCH)
                )
                members = [text(member) for member in raw]
                if not members:
                    break
                live, _ = await self._check(identity, key, members)
                yield live
                if len(members) < SCAN_BATCH:
                    break
                low = "(" + members[-1]

    async def _smallest_sets(self, identity: IdentityFilter) -> list[str]:
        """For each scope name the filter can match, its smallest identity set (a scope
        the filter matches is in all of them); none for a name with an empty one."""
        fields = identity.fields.items()
        candidates = [
            [index_key(self._prefix, name, field, value) for field, value in fields]
            for name in identity.scope_names()
        ]
        sizes = iter(
            await self._transport.read_many([("ZCARD", key) for keys in candidates for key in keys])
        )
        chosen = []
        for keys in candidates:
            size, key = min((int(next(sizes)), key) for key in keys)
            if size:
                chosen.append(key)
        return chosen

    async def _check(
        self, identity: IdentityFilter | None, key: str, members: list[str]
    ) -> tuple[list[tuple[ScopeInfo, str]], int]:
        """The members of ``key`` that are live scopes ``identity`` matches (none without
        one), and how many stale ones were removed. A claimed scope not created yet is
        neither."""
        found = [parse_member(member) for member in members]
        states = await self._transport.read_many(
            [
                ("EVALSHA", SCOPE_STATE_SHA, 2, self._keys(scope_key)[2], self._keys(scope_key)[0])
                for scope_key, _ in found
            ]
        )
        live: list[tuple[ScopeInfo, str]] = []
        stale: list[tuple[str, str]] = []
        for member, (scope_key, token), (stored, count) in zip(members, found, states, strict=True):
            stored_token, context = (None, None) if stored is None else stored_context(stored)
            if stored_token != token:
                stale.append((key, member))
            elif identity and context and int(count) > 0 and identity.matches(context):
                live.append((ScopeInfo(scope_key, context.scope, context, int(count)), token))
        await self._remove_members(stale)
        return live, len(stale)

    # ---- maintenance ----------------------------------------------------------------

    async def prune_identity_index(self, batch_size: int = 1000) -> int:
        """Remove stale identity index entries (of scopes that expired, were deleted or
        never got created), checking the sets of a pass over every identity set in turn
        until about ``batch_size`` entries were checked; the next call goes on from there
        (a new pass after the last). How many it removed.

        Searches and erasures remove the stale entries they meet; this reaches the sets
        no search reads (a conversation's, once it expired). It runs as the expiry
        sweep (:meth:`sweep_expired`) on Redis.
        """
        checked = removed = 0
        with self._errors:
            if self._pruning is None:
                pattern = glob_escape(self._prefix) + "{*}:scopes"
                self._pruning = aiter(self._transport.scan(pattern))
            try:
                while checked < batch_size:
                    key = await anext(self._pruning, None)
                    if key is None:
                        self._pruning = None
                        break
                    done, gone = await self._prune_set(text(key))
                    checked, removed = checked + done, removed + gone
            except BaseException:
                self._pruning = None
                raise
        return removed

    async def _prune_set(self, key: str) -> tuple[int, int]:
        """Every member of one identity set checked, the stale ones removed: how many of
        each."""
        checked = removed = 0
        low = "-"
        while True:
            raw = await self._transport.read(("ZRANGEBYLEX", key, low, "+", "LIMIT", 0, SCAN_BATCH))
            members = [text(member) for member in raw]
            if members:
                _, stale = await self._check(None, key, members)
                checked, removed = checked + len(members), removed + stale
            if len(members) < SCAN_BATCH:
                return checked, removed
            low = "(" + members[-1]

    async def index_existing_scopes(self) -> int:
        """Index every scope written by a version of statekit without identity indexes
        (its stored context has no token), so that searches and erasures find it; run it
        once after upgrading, with writers running or not. A ``SCAN`` of the store's
        keys, so its cost is the store's size; how many scopes it indexed.

        Each scope's context gets its token first (one script, if it is unchanged), its
        index entries after: the order a new scope's write follows.
        """
        indexed = 0
        batch: list[str] = []
        with self._errors:
            async for key in self._transport.scan(glob_escape(self._prefix) + "{*}:ctx"):
                batch.append(text(key))
                if len(batch) >= SCAN_BATCH:
                    indexed, batch = indexed + await self._adopt(batch), []
            if batch:
                indexed += await self._adopt(batch)
        return indexed

    async def _adopt(self, context_keys: list[str]) -> int:
        values = await self._transport.read_many([("GET", key) for key in context_keys])
        legacy = [
            (key, text(value))
            for key, value in zip(context_keys, values, strict=True)
            if value is not None and text(value).startswith("{")
        ]
        adopted = await asyncio.gather(
            *(
                self._transport.write(key, ("EVALSHA", ADOPT_SHA, 1, key, value))
                for key, value in legacy
            )
        )
        claimed = {
            key[len(self._prefix) + 1 : -len("}:ctx")]: text(now)
            for (key, _), now in zip(legacy, adopted, strict=True)
            if now is not None and not text(now).startswith("{")
        }
        await self._add_members(claimed)
        return len(claimed)
