"""What the Redis expiry tests share: a context, lifetimes, and the scope's keys as the
server holds them (read on the backend's own client)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

from statekit.backends.base import ScopeContext
from statekit.backends.redis import RedisBackend

CONTEXT = ScopeContext("r-1", "b-1", "conversation", conversation_id="c-1")
#: A deadline no test waits for.
FAR = 60.0
#: A deadline a test waits for.
SHORT = 0.15
#: Slack between this host's clock and what the server stores (ms rounding, one host).
SLACK = 0.005


def scope_keys(backend: RedisBackend, scope_key: str) -> list[str]:
    value_key = f"{backend.key_prefix}{{{scope_key}}}"
    return [value_key, value_key + ":meta", value_key + ":ctx", value_key + ":idx"]


async def raw(backend: RedisBackend, *command: Any) -> Any:
    """One command on the backend's own client (fakeredis, a server, a cluster node)."""
    return await backend._transport.client.execute_command(*command)


async def expire_times(backend: RedisBackend, scope_key: str) -> list[int]:
    """``PEXPIRETIME`` of each of the scope's four keys (-1: none, -2: absent)."""
    return [int(await raw(backend, "PEXPIRETIME", key)) for key in scope_keys(backend, scope_key)]


def shared(times: list[int]) -> int:
    """The one expire time all four keys of a scope have (a failure if they differ)."""
    assert len(set(times)) == 1, times
    return times[0]


async def sleep_past(moment: datetime | float) -> None:
    """Sleep until this host's clock is past ``moment`` (the server's is the same one)."""
    at = moment.timestamp() if isinstance(moment, datetime) else moment
    await asyncio.sleep(max(0.0, at - time.time()) + SLACK)


def unique() -> str:
    return f"conversation:v2:{uuid.uuid4().hex}"
