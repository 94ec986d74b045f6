"""Expiry on Redis servers of a test's own (lost scripts, a crash with AOF), and the rules
by which a ttl travels to the scripts and an expire time reads back as a deadline."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis_expiry_support import (
    CONTEXT,
    FAR,
    expire_times,
    raw,
    shared,
    sleep_past,
    unique,
)
from redis_servers import RedisServer, free_port

from statekit.backends.base import NEVER, StateWrite
from statekit.backends.redis import RedisBackend
from statekit.backends.redis.expiry import MAX_TTL_SECONDS, deadline, ttl_argument

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("auto_pipeline", [True, False], ids=["auto_pipeline", "direct"])
async def test_expiry_scripts_the_server_lost_are_loaded_again(
    own_server: RedisServer, auto_pipeline: bool
) -> None:
    """On a server of the test's own: ``SCRIPT FLUSH`` on a shared one would hit others."""
    backend = RedisBackend.from_url(own_server.url, key_prefix="p:", auto_pipeline=auto_pipeline)
    try:
        scope = unique()
        await backend.set(StateWrite(scope, "a", "1", CONTEXT, ttl=FAR))
        await raw(backend, "SCRIPT", "FLUSH")
        assert await backend.get(scope, "a", ttl=10 * FAR) == "1"
        await raw(backend, "SCRIPT", "FLUSH")
        assert await backend.set(StateWrite(scope, "a", "2", CONTEXT, ttl=FAR)) == 2
        await raw(backend, "SCRIPT", "FLUSH")
        deadline_ = await backend.scope_deadline(scope)
        assert [e.expires_at async for e in backend.iter_entries()] == [deadline_]
        assert shared(await expire_times(backend, scope)) > 0
    finally:
        await backend.aclose()


async def test_deadlines_survive_a_crash_and_restart_with_aof(tmp_path: Path) -> None:
    """Every write is in the AOF before its reply (``appendfsync always``) with its
    ``PEXPIREAT`` as an absolute time, so a SIGKILL and a restart keep each deadline."""
    persistence = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")
    server = RedisServer(tmp_path / "redis", free_port(), *persistence)
    server.start()
    try:
        backend = RedisBackend.from_url(server.url, key_prefix="aof:")
        await backend.set(StateWrite("timed", "a", "1", CONTEXT, ttl=FAR))
        await backend.set(StateWrite("short", "a", "1", CONTEXT, ttl=0.5))
        await backend.set(StateWrite("kept", "a", "1", CONTEXT))
        await backend.set(StateWrite("ended", "a", "1", CONTEXT, ttl=FAR))
        await backend.set(StateWrite("ended", "a", "2", CONTEXT, ttl=NEVER))
        timed = await backend.scope_deadline("timed")
        short = await backend.scope_deadline("short")
        await backend.aclose()
        server.kill()

        server.start()
        backend = RedisBackend.from_url(server.url, key_prefix="aof:")
        assert timed is not None
        assert await backend.scope_deadline("timed") == timed
        assert await expire_times(backend, "timed") == [round(timed.timestamp() * 1000) - 1] * 4
        assert await backend.scope_deadline("kept") is None
        assert await backend.get_versioned("ended", "a") == ("2", 2)
        assert await backend.scope_deadline("ended") is None
        assert short is not None
        await sleep_past(short)
        assert await backend.read_scopes(["short", "kept"]) == {"short": {}, "kept": {"a": "1"}}
        await backend.aclose()
    finally:
        server.kill()


@given(st.floats(min_value=1e-9, max_value=MAX_TTL_SECONDS, allow_nan=False))
def test_a_ttl_travels_as_whole_milliseconds_never_shorter_than_asked(ttl: float) -> None:
    millis = int(ttl_argument(ttl))
    assert millis >= 1
    assert millis >= ttl * 1000 - 1e-3
    assert millis < ttl * 1000 + 1


def test_a_ttl_beyond_the_longest_is_taken_as_the_longest_and_never_is_never() -> None:
    assert ttl_argument(MAX_TTL_SECONDS * 10) == ttl_argument(MAX_TTL_SECONDS)
    assert ttl_argument(NEVER) == "never"


@given(st.integers(min_value=0, max_value=253_402_300_799_998))
def test_the_deadline_is_one_millisecond_after_the_last_one_redis_keeps(expire: int) -> None:
    moment = deadline(expire)
    assert moment is not None
    assert moment.tzinfo is not None
    assert (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(
        milliseconds=1
    ) == expire + 1


def test_an_expire_time_beyond_any_datetime_reads_as_the_latest() -> None:
    assert deadline(2**62) == datetime.max.replace(tzinfo=timezone.utc)
    assert deadline(-1) is None
    assert deadline(-2) is None


def test_the_longest_ttl_gives_a_deadline_a_datetime_holds() -> None:
    longest = int(ttl_argument(MAX_TTL_SECONDS))
    assert deadline(round(time.time() * 1000) + longest) != deadline(2**62)
