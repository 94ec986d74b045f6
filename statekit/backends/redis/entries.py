"""Replies of the Redis backend's reads turned into statekit's values, and contexts into
the JSON the scripts store (see the key layout in :mod:`statekit.backends.redis`)."""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from statekit.backends.base import ScopeContext, StateEntry
from statekit.backends.redis.expiry import deadline

__all__ = ["context_json", "glob_escape", "pairs", "scope_entries", "stored_context", "text"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_GLOB_SPECIAL = frozenset("*?[]\\")


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _timestamp(micros: str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def pairs(reply: Any) -> dict[str, str]:
    """A ``HGETALL`` reply as text: a flat list from the wire (RESP2, and any script's
    reply), or the dict that RESP3 and redis-py's own parsing give."""
    if isinstance(reply, dict):
        return {text(k): text(v) for k, v in reply.items()}
    return {text(k): text(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def context_json(context: ScopeContext) -> str:
    """The context as stored in ``P{S}:ctx``; cached, as a runner writes with few contexts
    and the store hands over the same checked context object for the same scope: that
    object is found by identity first, which costs less than hashing its eleven fields."""
    hit = _JSON_BY_ID.get(id(context))
    if hit is not None and hit[0] is context:
        return hit[1]
    stored = _context_json(context)
    if len(_JSON_BY_ID) >= _CACHE_SIZE:
        _JSON_BY_ID.clear()
    # The context is kept with its JSON, so its id names no other object meanwhile.
    _JSON_BY_ID[id(context)] = (context, stored)
    return stored


_CACHE_SIZE = 4096
_JSON_BY_ID: dict[int, tuple[ScopeContext, str]] = {}


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _context_json(context: ScopeContext) -> str:
    return json.dumps(context.as_dict(), separators=(",", ":"))


def stored_context(raw: bytes | str) -> tuple[str | None, ScopeContext]:
    """The token and context of a stored ``P{S}:ctx``: ``"<token>:<JSON>"``, or the plain
    JSON a scope created before identity indexes has (no token)."""
    stored = text(raw)
    token: str | None = None
    if not stored.startswith("{"):
        token, _, stored = stored.partition(":")
    return token, ScopeContext(**json.loads(stored))


def scope_entries(scope_key: str, reply: Any) -> list[StateEntry]:
    """The entries of one scope from the ``ENTRIES`` script's reply (values, metas,
    context, expire time, all read at one instant); none when the scope is gone."""
    values, metas, ctx, expire_time = reply
    if ctx is None or int(expire_time) == -2:
        return []  # deleted (or expired) between SCAN and read
    _, context = stored_context(ctx)
    expires_at = deadline(int(expire_time))
    meta_by_key = pairs(metas)
    entries = []
    for state_key, value_json in pairs(values).items():
        meta = meta_by_key.get(state_key)
        if meta is None:
            continue
        version, created, updated = meta.split(":")
        entries.append(
            StateEntry(
                scope_key=scope_key,
                state_key=state_key,
                value_json=value_json,
                context=context,
                created_at=_timestamp(created),
                updated_at=_timestamp(updated),
                version=int(version),
                expires_at=expires_at,
            )
        )
    return entries
