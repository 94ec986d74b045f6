"""Single writes sent side by side go out as one script call, each with its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis_servers import shared_backend
from services import service_url

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.redis import RedisBackend, connections
from statekit.backends.redis.coalesce import MAX_JOINED, coalescing, join
from statekit.backends.redis.scripts import (
    WRITE_EACH_SHA,
    WRITE_EACH_TTL_SHA,
    WRITE_ONE_SHA,
    WRITE_ONE_TTL_SHA,
)
from statekit.errors import StateBackendError, VersionConflictError

CONTEXT = ScopeContext(runner_id="r-1", binding_identity="b-1", scope="conversation")
Command = tuple[Any, ...]


def _write(script: str, n: int) -> Command:
    """A single write as the backend sends it: 4 keys, then its arguments."""
    keys = (f"{{s{n}}}", f"{{s{n}}}:meta", f"{{s{n}}}:ctx", f"{{s{n}}}:idx")
    args = (f"k{n}", str(n), f'{{"c":{n % 3}}}', "")
    return ("EVALSHA", script, 4, *keys, *args, *(("1000",) if script == WRITE_ONE_TTL_SHA else ()))


def _other(n: int) -> Command:
    return ("HGET", f"{{s{n}}}", f"k{n}")


def _run(command: Command) -> Any:
    """What a stand-in server answers: a single write its value hash, field and context;
    a joined call the list of those of its writes (each its value hash as the only key,
    then 4 or 5 arguments, the third the position in ARGV of its context); any other
    command its field."""
    if command[1] in (WRITE_EACH_SHA, WRITE_EACH_TTL_SHA):
        count = command[2]
        width = 5 if command[1] == WRITE_EACH_TTL_SHA else 4
        keys, argv = command[3 : 3 + count], command[3 + count :]
        contexts = argv[count * width :]
        assert len(set(contexts)) == len(contexts)  # each sent once
        return [(keys[i], argv[i * width], argv[argv[i * width + 2] - 1]) for i in range(count)]
    return (command[3], command[7], command[9]) if command[0] == "EVALSHA" else command[2]


_COMMANDS = st.lists(
    st.one_of(
        st.builds(_write, st.sampled_from([WRITE_ONE_SHA, WRITE_ONE_TTL_SHA]), st.integers(0, 9)),
        st.builds(_other, st.integers(0, 9)),
    ),
    max_size=300,
)


@given(_COMMANDS)
def test_joining_keeps_each_commands_place_and_reply(commands: list[Command]) -> None:
    sent, counts = join(commands)
    assert sum(counts) == len(commands)
    position = 0
    for command, count in zip(sent, counts, strict=True):
        part = commands[position : position + count]
        if count == 1:
            assert command == part[0]
        else:  # a run of adjacent single writes of one script, within the bound
            assert count <= MAX_JOINED
            assert {c[1] for c in part} in ({WRITE_ONE_SHA}, {WRITE_ONE_TTL_SHA})
            assert [_run(c) for c in part] == _run(command)
        position += count
    # Every run is as long as it may be: no two neighbours of one script stay apart.
    scripts = [_script(command, count) for command, count in zip(sent, counts, strict=True)]
    for i in range(len(sent) - 1):
        assert scripts[i] is None or scripts[i] != scripts[i + 1] or counts[i] == MAX_JOINED


def _script(command: Command, count: int) -> str | None:
    """The single write script of a command :func:`join` sent, if it is one or a run."""
    if count > 1:
        return WRITE_ONE_SHA if command[1] == WRITE_EACH_SHA else WRITE_ONE_TTL_SHA
    return command[1] if command[0] == "EVALSHA" else None


@given(_COMMANDS)
def test_each_caller_gets_its_own_reply(commands: list[Command]) -> None:
    async def server(batch: Sequence[Command]) -> list[Any]:
        return [_run(command) for command in batch]

    async def sent() -> list[Any]:
        return await coalescing(server)(commands)

    replies = asyncio.run(sent())
    assert replies == [_run(command) for command in commands]


async def test_an_error_reply_of_a_joined_call_reaches_each_of_its_writes() -> None:
    error = StateBackendError("OOM command not allowed")

    async def server(batch: Sequence[Command]) -> list[Any]:
        return [error if c[1] == WRITE_EACH_SHA else _run(c) for c in batch]

    commands = [_other(0), *(_write(WRITE_ONE_SHA, n) for n in range(3)), _other(1)]
    assert await coalescing(server)(commands) == ["k0", error, error, error, "k1"]


# ---- on a server ------------------------------------------------------------------------


class SentCommands:
    """Every command that reaches the socket, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commands: list[Command] = []
        send = connections.round_trip

        async def recorded(connection: Any, commands: Sequence[Command]) -> list[Any]:
            self.commands += commands
            return await send(connection, commands)

        monkeypatch.setattr(connections, "round_trip", recorded)

    def scripts(self) -> list[str]:
        return [str(c[1]) for c in self.commands if c[0] == "EVALSHA"]


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[RedisBackend]:
    async with shared_backend("join") as backend:
        yield backend


@pytest.mark.redis
async def test_concurrent_writes_share_script_calls_and_keep_call_order(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = SentCommands(monkeypatch)
    # New scopes: each write is refused, its scope indexed, then written (all joined).
    versions = await asyncio.gather(
        *(backend.set(StateWrite(f"s{i}", "k", str(i), CONTEXT)) for i in range(40))
    )
    assert versions == [1] * 40
    assert WRITE_EACH_SHA in sent.scripts()
    # One key written 50 times at once: the versions follow the call order, the last wins.
    sent.commands.clear()
    versions = await asyncio.gather(
        *(backend.set(StateWrite("s0", "k", f"v{i}", CONTEXT)) for i in range(50))
    )
    assert versions == list(range(2, 52))
    assert await backend.get_versioned("s0", "k") == ("v49", 51)
    assert len(sent.scripts()) < 10  # 50 writes in a few calls
    assert await backend.list_keys("s7", "", 10, None) == (["k"], False)


@pytest.mark.redis
async def test_a_joined_write_fails_alone(backend: RedisBackend) -> None:
    await backend.set(StateWrite("s", "k", "1", CONTEXT))
    raw = aioredis.Redis.from_url(service_url("STATEKIT_REDIS_URL"))
    broken = f"{backend.key_prefix}{{broken}}:meta"
    await raw.set(broken, "not a hash")  # the write's HGET fails with WRONGTYPE
    try:
        results = await asyncio.gather(
            backend.get("s", "k"),  # sent alone: the writes queue behind it
            *(backend.set(StateWrite("s", f"w{i}", str(i), CONTEXT)) for i in range(10)),
            backend.set(StateWrite("broken", "k", "x", CONTEXT)),
            backend.set(StateWrite("s", "k", "2", CONTEXT), 7),  # conflict
            backend.set(StateWrite("s", "k", "3", CONTEXT), 1),  # succeeds
            backend.set(StateWrite("s", "t", "4", CONTEXT, ttl=60.0)),
            backend.set(StateWrite("s", "u", "5", CONTEXT, ttl=60.0)),
            return_exceptions=True,
        )
    finally:
        await raw.delete(broken)
        await raw.aclose()
    assert results[:11] == ["1", *[1] * 10]
    assert isinstance(results[11], StateBackendError)
    assert "WRONGTYPE" in str(results[11])
    conflict = results[12]
    assert isinstance(conflict, VersionConflictError)
    assert (conflict.expected, conflict.actual) == (7, 1)
    assert results[13:] == [2, 1, 1]
    assert await backend.get_versioned("s", "k") == ("3", 2)
    deadline = await backend.scope_deadline("s")
    assert deadline is not None  # the writes with a ttl set the scope's deadline
