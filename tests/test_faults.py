"""Faults under load: every call succeeds or raises a statekit error in bounded time, and
after recovery every acknowledged write is readable.

Writers keep writing new keys while the test stops the server, kills connections or
restarts it. Afterwards every acknowledged key must be stored with its value; a write
that raised has an unknown outcome (it may have been applied), and nothing else may exist.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import asyncio as aioredis
from redis_servers import RedisServer, free_port
from sqlsupport import postgres_url, private_schema, terminate_connections

from statekit import StatekitError, StateStore
from statekit.backends.redis import RedisBackend
from statekit.backends.sql import SQLBackend
from statekit.testing import Identity, new_identity

# A hung call fails the test through this bound; statekit's own timeouts are far lower.
CALL_BOUND = 10.0


@dataclass
class Ledger:
    """Keys whose writes were acknowledged, and keys whose writes raised (applied or not,
    nobody knows), with the value each write carried."""

    acknowledged: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    failures: int = 0

    def count(self, writer: str) -> int:
        return sum(1 for key in self.acknowledged if key.startswith(writer + ":"))


async def _write_until(
    store: StateStore, ident: Identity, writer: str, ledger: Ledger, done: asyncio.Event
) -> None:
    number = 0
    while not done.is_set():
        number += 1
        key = f"{writer}:{number:06d}"
        try:
            ok = await asyncio.wait_for(
                store.apply_update_from_event(
                    ident.event, ident.binding, ident.descriptor, "conversation", key, number
                ),
                CALL_BOUND,
            )
        except StatekitError:
            ledger.failures += 1
            ledger.unknown[key] = number
            await asyncio.sleep(0.02)
            continue
        except Exception as exc:  # a driver error or a hang: the contract is broken
            ledger.errors.append(f"{type(exc).__name__}: {exc}")
            return
        assert ok == (True, None)
        ledger.acknowledged[key] = number
        await asyncio.sleep(0)


async def _run_fault(
    store: StateStore, fault: Callable[[], Awaitable[None]], writers: int = 16
) -> tuple[Identity, Ledger]:
    """Run writers, inject ``fault`` mid-stream, keep writing until 5 more successes each."""
    ident = new_identity()
    ledger = Ledger()
    done = asyncio.Event()
    names = [f"writer{n:02d}" for n in range(writers)]
    tasks = [asyncio.create_task(_write_until(store, ident, w, ledger, done)) for w in names]
    # Every writer under way before the fault: waited for, bounded, not a fixed sleep (a
    # loaded machine may take longer than any fixed pause).
    for _ in range(int(CALL_BOUND * 20)):
        if all(ledger.count(w) for w in names):
            break
        await asyncio.sleep(0.05)
    before = {w: ledger.count(w) for w in names}
    assert all(before.values())
    await fault()

    def recovered() -> bool:
        return all(ledger.count(w) > before[w] + 5 for w in names)

    # Recovered: every writer has acknowledged writes again, without a new store.
    for _ in range(int(CALL_BOUND * 20)):
        if recovered():
            break
        await asyncio.sleep(0.05)
    done.set()
    await asyncio.gather(*tasks)
    assert ledger.errors == []
    assert recovered()
    return ident, ledger


async def _assert_nothing_acknowledged_was_lost(
    store: StateStore, ident: Identity, ledger: Ledger
) -> None:
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    stored = {k: v for k, v in snapshot["conversation"].items() if k.startswith("writer")}
    lost = [key for key in ledger.acknowledged if key not in stored]
    assert lost == [], f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"
    for key, value in stored.items():
        assert value == ledger.acknowledged.get(key, ledger.unknown.get(key)), key


# ---- Redis ------------------------------------------------------------------------------


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    return tmp_path / "redis"


def _redis_store(server: RedisServer) -> StateStore:
    return StateStore(
        RedisBackend.from_url(
            server.url, timeout=1.0, connect_timeout=0.5, retries=1, key_prefix="faults:"
        )
    )


@pytest.mark.redis
@pytest.mark.parametrize(
    ("fsync", "stop_signal"),
    [("everysec", signal.SIGTERM), ("always", signal.SIGKILL)],
    ids=["everysec-stopped", "always-killed"],
)
async def test_redis_stopped_mid_stream_keeps_every_acknowledged_write(
    server_dir: Path, fsync: str, stop_signal: signal.Signals
) -> None:
    """AOF ``everysec`` survives a stop of the server, ``always`` even a SIGKILL."""
    server = RedisServer(
        server_dir, free_port(), "--save", "", "--appendonly", "yes", "--appendfsync", fsync
    )
    server.start()
    store = _redis_store(server)

    async def stop_and_restart() -> None:
        assert server.process is not None
        server.process.send_signal(stop_signal)
        await asyncio.to_thread(server.process.wait, 10)
        server.process = None
        await asyncio.sleep(0.5)  # writers meet the outage
        await asyncio.to_thread(server.start)  # same port, same directory: replays the AOF

    try:
        ident, ledger = await _run_fault(store, stop_and_restart)
        assert ledger.failures > 0  # the outage was seen, as typed errors only
        await _assert_nothing_acknowledged_was_lost(store, ident, ledger)
    finally:
        await store.aclose()
        server.kill()


@pytest.mark.redis
async def test_redis_killed_connections_mid_stream_lose_nothing(server_dir: Path) -> None:
    server = RedisServer(server_dir, free_port(), "--save", "", "--appendonly", "no")
    server.start()
    store = _redis_store(server)
    admin = aioredis.Redis.from_url(server.url)

    killed: list[int] = []

    async def kill_connections() -> None:
        for _ in range(3):
            killed.append(
                await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # type: ignore[no-untyped-call]
            )
            await asyncio.sleep(0.1)

    try:
        ident, ledger = await _run_fault(store, kill_connections)
        assert sum(killed) > 0
        await _assert_nothing_acknowledged_was_lost(store, ident, ledger)
    finally:
        await admin.aclose()
        await store.aclose()
        server.kill()


# ---- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    yield from private_schema()


@pytest.mark.postgres
async def test_postgres_killed_connections_mid_stream_lose_nothing(pg_schema: str) -> None:
    name = f"statekit-faults-{uuid.uuid4().hex[:8]}"
    store = StateStore(
        SQLBackend.from_url(postgres_url(), schema=pg_schema, application_name=name, timeout=2)
    )

    async def terminate_three_times() -> None:
        for _ in range(3):
            await terminate_connections(name)
            await asyncio.sleep(0.1)

    try:
        ident, ledger = await _run_fault(store, terminate_three_times)
        assert ledger.failures > 0
        await _assert_nothing_acknowledged_was_lost(store, ident, ledger)
    finally:
        await store.clear_all()
        await store.aclose()
