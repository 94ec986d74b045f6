"""Auto-pipelining on Redis: concurrent calls share round trips, each keeps its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis_servers import RedisServer, private_prefix, shared_backend
from services import service_url

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.redis import RedisBackend, connections
from statekit.backends.redis.pipeline import AutoPipeline
from statekit.backends.redis.transport import StandaloneTransport
from statekit.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    StateBackendError,
    StoreClosedError,
    VersionConflictError,
)

pytestmark = pytest.mark.redis

CONTEXT = ScopeContext(runner_id="r-1", binding_identity="b-1", scope="conversation")


class RoundTrips:
    """Counts what reaches the socket: every round trip, with how many commands it sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        send = connections.round_trip

        async def counted(connection: Any, commands: Sequence[Any]) -> list[Any]:
            self.sizes.append(len(commands))
            return await send(connection, commands)

        monkeypatch.setattr(connections, "round_trip", counted)

    @property
    def total(self) -> int:
        return len(self.sizes)

    def reset(self) -> None:
        self.sizes.clear()


def _pipeline(backend: RedisBackend) -> AutoPipeline | None:
    assert isinstance(backend._transport, StandaloneTransport)
    return backend._transport.pipeline


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[RedisBackend]:
    async with shared_backend("pipe") as backend:
        yield backend


# ---- coalescing -----------------------------------------------------------------------


async def test_concurrent_calls_share_round_trips(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await backend.set_many([])  # nothing to send
    for i in range(100):
        await backend.set(StateWrite(f"s{i % 10}", f"k{i}", str(i), CONTEXT))
    trips = RoundTrips(monkeypatch)

    values = await asyncio.gather(*(backend.get(f"s{i % 10}", f"k{i}") for i in range(100)))
    assert values == [str(i) for i in range(100)]
    # The first call goes out alone at once; the other 99 share at most a few batches.
    assert trips.total <= 4
    assert sum(trips.sizes) == 100

    trips.reset()
    versions = await asyncio.gather(
        *(backend.set(StateWrite(f"s{i % 10}", f"k{i}", str(-i), CONTEXT)) for i in range(100))
    )
    assert versions == [2] * 100
    assert trips.total <= 4
    assert await backend.get_versioned("s3", "k13") == ("-13", 2)


async def test_without_auto_pipeline_every_call_is_its_own_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = service_url("STATEKIT_REDIS_URL") + "?auto_pipeline=false"
    backend = RedisBackend.from_url(url, key_prefix=private_prefix("pipe"))
    try:
        assert _pipeline(backend) is None
        trips = RoundTrips(monkeypatch)
        assert await asyncio.gather(*(backend.get("s", f"k{i}") for i in range(20))) == [None] * 20
        assert trips.sizes == [1] * 20
    finally:
        await backend.aclose()


async def test_a_batch_never_exceeds_its_bound(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await backend.set(StateWrite("s", "k", "1", CONTEXT))
    trips = RoundTrips(monkeypatch)
    values = await asyncio.gather(*(backend.get("s", "k") for _ in range(1500)))
    assert values == ["1"] * 1500
    assert max(trips.sizes) <= 512
    assert sum(trips.sizes) == 1500


async def test_sustained_concurrent_load_never_stalls(backend: RedisBackend) -> None:
    """Callers in lockstep, as under load: batches end and new calls arrive in the same
    loop iterations, so a worker that has just finished must never strand a queued call."""

    async def caller(n: int) -> None:
        for i in range(60):
            if i % 3 == 0:
                assert (
                    await backend.set(StateWrite(f"s{n % 8}", f"k{n}", str(i), CONTEXT))
                    == i // 3 + 1
                )
            else:
                assert await backend.get(f"s{n % 8}", f"k{n}") == str(i - i % 3)

    await asyncio.wait_for(asyncio.gather(*(caller(n) for n in range(64))), 60)


class GatedServer:
    """A stand-in for the round trips, whose replies (each command's last argument) all
    wait for one gate: opening it ends every round trip in flight in the same loop
    iteration, the interleaving that a real server produces only now and then."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def send(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        await self.gate.wait()
        await asyncio.sleep(0)  # a reply takes at least one loop iteration
        return [command[-1] for command in commands]


async def test_calls_queued_as_every_round_trip_ends_are_still_sent() -> None:
    server = GatedServer()
    pipeline = AutoPipeline(server.send, timeout=None)

    async def execute(*command: Any) -> Any:
        (reply,) = await pipeline.execute_many((command,))
        return reply

    async def chained(i: int) -> Any:
        await execute("GET", f"a{i}")
        return await execute("GET", f"b{i}")

    alone = asyncio.create_task(execute("GET", "x"))  # sent at once
    first = [asyncio.create_task(chained(i)) for i in range(10)]  # one batch
    await asyncio.sleep(0)
    second = [asyncio.create_task(execute("GET", f"c{i}")) for i in range(10)]
    await asyncio.sleep(0)
    # All three round trips end in one iteration; the first batch's callers call again
    # at once, before the finished workers are gone: one goes alone, nine queue.
    server.gate.set()
    results = await asyncio.wait_for(asyncio.gather(alone, *first, *second), 10)
    assert results == ["x", *(f"b{i}" for i in range(10)), *(f"c{i}" for i in range(10))]


async def test_a_batch_ending_alone_wakes_its_callers_in_halves() -> None:
    """With no other round trip under way, the first half of a batch's callers are woken
    and their next calls sent before the others are woken (the server works on those
    while the client runs the rest), each caller still getting its own replies."""
    batches: list[list[Any]] = []

    async def send(commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        batches.append([command[-1] for command in commands])
        await asyncio.sleep(0)
        return [command[-1] for command in commands]

    pipeline = AutoPipeline(send, timeout=None)

    async def chained(i: int) -> list[Any]:
        (first,) = await pipeline.execute_many((("GET", f"a{i}"),))
        (second,) = await pipeline.execute_many((("GET", f"b{i}"),))
        return [first, second]

    results = await asyncio.wait_for(asyncio.gather(*(chained(i) for i in range(21))), 10)
    assert results == [[f"a{i}", f"b{i}"] for i in range(21)]
    assert batches[0] == ["a0"]  # sent alone, the others queued behind it
    assert batches[1][:20] == [f"a{i}" for i in range(1, 21)]
    # That batch ended with no other round trip under way: the first 10 woken first.
    assert [f"b{i}" for i in range(1, 11)] in batches
    sent = sorted(name for batch in batches for name in batch)
    assert sent == sorted(f"{x}{i}" for x in "ab" for i in range(21))  # each once


# ---- per-call outcomes ------------------------------------------------------------------


async def test_command_errors_stay_with_their_caller(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    await backend.set(StateWrite("s", "k", "1", CONTEXT))
    raw = aioredis.Redis.from_url(service_url("STATEKIT_REDIS_URL"))
    wrong_type = f"{backend._prefix}{{str}}"
    await raw.set(wrong_type, "not a hash")  # HGET on it fails with WRONGTYPE
    trips = RoundTrips(monkeypatch)
    try:
        calls = [
            backend.get("s", "k"),  # sent alone: the rest queue behind it
            *(backend.set(StateWrite("s", f"w{i}", str(i), CONTEXT)) for i in range(20)),
            backend.set(StateWrite("s", "k", "2", CONTEXT), 7),  # conflict
            backend.get("str", "k"),  # WRONGTYPE
            *(backend.get("s", f"w{i}") for i in range(20)),
            backend.set(StateWrite("s", "k", "3", CONTEXT), 1),  # succeeds
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await raw.delete(wrong_type)
        await raw.aclose()
    assert trips.total <= 3
    assert results[0] == "1"
    assert results[1:21] == [1] * 20
    conflict = results[21]
    assert isinstance(conflict, VersionConflictError)
    assert (conflict.expected, conflict.actual) == (7, 1)
    assert isinstance(results[22], StateBackendError)
    assert "WRONGTYPE" in str(results[22])
    assert results[23:43] == [str(i) for i in range(20)]
    assert results[43] == 2
    assert await backend.get_versioned("s", "k") == ("3", 2)


async def test_lost_scripts_are_loaded_again(own_server: RedisServer) -> None:
    async with own_server.backend(key_prefix="p:") as backend, own_server.client() as admin:
        await backend.set(StateWrite("s", "k0", "1", CONTEXT))
        await admin.script_flush()
        results = await asyncio.gather(
            *(backend.set(StateWrite("s", f"k{i}", str(i), CONTEXT)) for i in range(30)),
            *(backend.get_versioned("s", f"k{i}") for i in range(30)),
            backend.delete("s", "k0"),
        )
        assert results[:30] == [2] + [1] * 29
        assert results[30:60] == [("0", 2)] + [(str(i), 1) for i in range(1, 30)]
        assert results[60] is True
        await admin.script_flush()
        assert await backend.set(StateWrite("s", "k", "x", CONTEXT)) == 1  # alone, not batched


# ---- faults -----------------------------------------------------------------------------


async def test_server_killed_mid_batch_fails_every_caller_then_recovers(
    own_server: RedisServer,
) -> None:
    async with (
        own_server.backend(timeout=5, connect_timeout=0.5, retries=1, key_prefix="f:") as backend,
        own_server.busy(5) as sleeping,
    ):
        calls = [
            asyncio.create_task(backend.get("s", f"k{i}"))
            if i % 2
            else asyncio.create_task(backend.set(StateWrite("s", f"k{i}", "1", CONTEXT)))
            for i in range(100)
        ]
        await asyncio.sleep(0.3)  # every call sent or queued, none answered
        assert not any(call.done() for call in calls)
        own_server.kill()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        for result in results:
            assert isinstance(result, BackendUnavailableError)
            assert not isinstance(result, BackendTimeoutError)
        sleeping.cancel()

        own_server.start()
        assert await backend.get("s", "k1") is None
        versions = await asyncio.gather(
            *(backend.set(StateWrite("s", f"k{i}", "2", CONTEXT)) for i in range(50))
        )
        assert versions == [1] * 50


async def test_connections_the_server_closed_while_idle_are_opened_again_before_use(
    own_server: RedisServer,
) -> None:
    """A kept connection the server closed (restart, ``CLIENT KILL``, idle ``timeout``) is
    never sent a write: that would fail it with an unknown outcome though it never ran."""
    async with own_server.backend(key_prefix="idle:") as backend, own_server.client() as admin:
        writes = [backend.set(StateWrite("s", f"k{i}", "1", CONTEXT)) for i in range(30)]
        assert await asyncio.gather(*writes) == [1] * 30  # several kept connections
        assert isinstance(backend._transport, StandaloneTransport)
        kept = backend._transport.connections
        assert isinstance(kept, connections.KeptConnections)
        assert len(kept._opened) > 1
        await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # type: ignore[no-untyped-call]
        for _ in range(500):  # until the event loop has seen every one of them close
            if not any(map(connections.usable, kept._opened)):
                break
            await asyncio.sleep(0.01)
        writes = [backend.set(StateWrite("s", f"k{i}", "2", CONTEXT)) for i in range(30)]
        assert await asyncio.gather(*writes) == [2] * 30
        assert await backend.get("s", "k0") == "2"


async def test_a_stalled_server_times_every_caller_out_then_recovers(
    own_server: RedisServer,
) -> None:
    async with own_server.backend(timeout=0.3, retries=1, key_prefix="f:") as backend:
        await backend.set(StateWrite("s", "k", "1", CONTEXT))
        async with own_server.busy(1.5) as sleeping:
            results = await asyncio.wait_for(
                asyncio.gather(*(backend.get("s", "k") for _ in range(50)), return_exceptions=True),
                10,
            )
            assert all(isinstance(r, BackendTimeoutError) for r in results)
            await sleeping
            assert await asyncio.gather(*(backend.get("s", "k") for _ in range(50))) == ["1"] * 50


async def test_a_cancelled_caller_leaves_the_others_alone(own_server: RedisServer) -> None:
    async with own_server.backend(key_prefix="c:") as backend:
        await backend.set_many([])
        await backend.set(StateWrite("s", "k", "v", CONTEXT))
        async with own_server.busy(0.5) as sleeping:
            calls = [asyncio.create_task(backend.get("s", "k")) for _ in range(40)]
            await asyncio.sleep(0.1)  # the first call and a batch are on the wire, others queued
            for index in (0, 5, 39):  # the direct call, one in a batch, one at the end
                calls[index].cancel()
            writes = [
                asyncio.create_task(backend.set(StateWrite("s", f"w{i}", "1", CONTEXT)))
                for i in range(5)
            ]
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
            for index, result in enumerate(results):
                if index in (0, 5, 39):
                    assert isinstance(result, asyncio.CancelledError)
                else:
                    assert result == "v"
            assert await asyncio.gather(*writes) == [1] * 5
            await sleeping
            # Nothing is stuck: later calls go through, alone and together.
            assert await backend.get("s", "w0") == "1"
            assert await asyncio.gather(*(backend.get("s", f"w{i}") for i in range(5))) == ["1"] * 5


@pytest.mark.parametrize(
    ("auto_pipeline", "behind"),
    [(True, False), (True, True), (False, False)],
    ids=["pipelined-alone", "pipelined-in-a-batch", "direct"],
)
async def test_a_write_cancelled_on_the_wire_is_never_overtaken_by_the_next(
    own_server: RedisServer, auto_pipeline: bool, behind: bool
) -> None:
    """A caller cancelled once its write is sent leaves only when the server has replied:
    the write it makes next, maybe on another connection, reaches the server after it
    (``behind``: the cancelled write went in a batch, behind a call already in flight)."""
    options = {"key_prefix": "o:", "auto_pipeline": auto_pipeline, "timeout": 10}
    async with own_server.backend(**options) as backend:
        await backend.set(StateWrite("s", "k", "0", CONTEXT))
        async with own_server.busy(0.6) as sleeping:
            ahead = asyncio.create_task(backend.get("s", "k")) if behind else None
            await asyncio.sleep(0.05)
            cancelled = asyncio.create_task(backend.set(StateWrite("s", "k", "1", CONTEXT)))
            await asyncio.sleep(0.1)  # on the wire, waiting for the sleeping server
            cancelled.cancel()
            await asyncio.sleep(0.2)
            assert not cancelled.done()  # held back while its reply is outstanding
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(cancelled, 10)
            assert sleeping.done()
            await backend.set(StateWrite("s", "k", "2", CONTEXT))
            if ahead is not None:
                assert await ahead == "0"
        assert await backend.get("s", "k") == "2"
        assert await backend.get_versioned("s", "k") == ("2", 3)  # both writes applied


async def test_a_call_cancelled_in_the_queue_leaves_at_once_and_is_never_sent() -> None:
    server = GatedServer()
    pipeline = AutoPipeline(server.send, timeout=None)
    sent: list[Any] = []
    send = server.send

    async def recording(commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        sent.extend(commands)
        return await send(commands)

    pipeline._send_commands = recording
    ahead = asyncio.create_task(pipeline.execute_many((("GET", "a"),)))
    await asyncio.sleep(0)
    queued = asyncio.create_task(pipeline.execute_many((("GET", "q"),)))
    queued.cancel()  # before any worker took it
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(queued, 1)
    server.gate.set()
    assert await ahead == ["a"]
    assert ("GET", "q") not in sent


async def test_calls_after_close_fail_with_a_typed_error(own_server: RedisServer) -> None:
    backend = RedisBackend.from_url(own_server.url, key_prefix="x:")
    await backend.set(StateWrite("s", "k", "v", CONTEXT))
    await backend.aclose()
    # Not BackendUnavailableError, which says "retry later": a closed backend stays closed.
    with pytest.raises(StoreClosedError):
        await backend.get("s", "k")


# ---- options ----------------------------------------------------------------------------


def test_auto_pipeline_option_from_url_and_keyword() -> None:
    assert _pipeline(RedisBackend.from_url("redis://127.0.0.1:6390/0")) is not None
    off = RedisBackend.from_url("redis://127.0.0.1:6390/0?auto_pipeline=false")
    assert _pipeline(off) is None
    on = RedisBackend.from_url("redis://127.0.0.1:6390/0?auto_pipeline=false", auto_pipeline=True)
    assert _pipeline(on) is not None
    assert _pipeline(RedisBackend.from_url("redis://h:1", auto_pipeline="no")) is None
    cluster = RedisBackend.from_url("redis+cluster://127.0.0.1:7000?auto_pipeline=true")
    # Clusters keep one call per operation.
    assert getattr(cluster._transport, "pipeline", "none") == "none"


@pytest.mark.parametrize("value", ["maybe", "", "2"])
def test_bad_auto_pipeline_values_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(f"redis://h:1?auto_pipeline={value}")
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url("redis://h:1", auto_pipeline=value)
