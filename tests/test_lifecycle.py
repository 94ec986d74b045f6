"""A store's life: every call after ``aclose()`` refused with one typed error, calls under
way when it closes ended the same way (never a raw error, never a hang), and one store
serving one event loop after another (two ``asyncio.run()`` calls with a module-level
store, as hosts do).

What every backend owes after its own ``aclose()`` is in the contract suite
(``test_every_call_after_aclose_raises_store_closed``); here the store's own refusal, and
the Redis transports under way and across loops.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from redis_servers import RedisServer, free_port
from services import service_url

import statekit
from statekit import MemoryBackend, StateStore
from statekit.backends.base import ScopeContext, StateEntry
from statekit.testing import new_identity
from statekit.testing.contract import assert_all_refused_as_closed

SCOPE_KEY = "runner:v2:lifecycle"


class _LenientBackend(MemoryBackend):
    """A backend that keeps working after its aclose(), as a careless third-party one
    might: the store's own refusal must not depend on the backend's."""

    async def aclose(self) -> None:
        return None


def _store_calls(store: StateStore) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One call of every public StateStore method, valid or refused input alike."""
    ident = new_identity()
    disabled = new_identity(enable_state=False)

    async def export() -> None:
        async for _ in store.export():
            pass

    async def enter() -> None:
        async with store:
            pass

    now = datetime.now(timezone.utc)
    entry = StateEntry(SCOPE_KEY, "k", "1", ScopeContext("r", "b", "runner"), now, now, 1)
    return {
        "snapshot": lambda: store.build_snapshot_from_event(
            ident.event, ident.binding, ident.descriptor
        ),
        "snapshot (policy off)": lambda: store.build_snapshot_from_event(
            disabled.event, disabled.binding, disabled.descriptor
        ),
        "apply_update": lambda: store.apply_update_from_event(
            ident.event, ident.binding, ident.descriptor, "runner", "k", 1
        ),
        "apply_updates": lambda: store.apply_updates_from_event(
            ident.event, ident.binding, ident.descriptor, [("runner", "k", 1)]
        ),
        "read_scope": lambda: store.read_scope(SCOPE_KEY),
        "state_get": lambda: store.state_get(SCOPE_KEY, "k"),
        "state_get (bad key)": lambda: store.state_get(SCOPE_KEY, ""),
        "state_get_versioned": lambda: store.state_get_versioned(SCOPE_KEY, "k"),
        "state_set": lambda: store.state_set(SCOPE_KEY, "k", 1, "r", "b", "runner"),
        "state_set (refused)": lambda: store.state_set(
            SCOPE_KEY, "k", float("nan"), "r", "b", "runner"
        ),
        "state_delete": lambda: store.state_delete(SCOPE_KEY, "k"),
        "state_list": lambda: store.state_list(SCOPE_KEY),
        "export": export,
        "import_entries": lambda: store.import_entries([entry]),
        "count_entries": lambda: store.count_entries([SCOPE_KEY]),
        "describe": store.describe,
        "clear_all": store.clear_all,
        "async with": enter,
    }


@pytest.mark.parametrize("backend_class", [MemoryBackend, _LenientBackend])
async def test_every_store_call_after_aclose_raises_store_closed(
    backend_class: type[MemoryBackend],
) -> None:
    store = StateStore(backend_class())
    assert await store.state_set(SCOPE_KEY, "k", 1, "r", "b", "runner") == (True, None)
    await store.aclose()
    await store.aclose()  # idempotent
    await assert_all_refused_as_closed(_store_calls(store))


# ---- aclose() while calls are under way ------------------------------------------------

#: How long the server holds every reply back: calls must end well before it answers.
HOLD = 2.0


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", free_port(), "--save", "", "--appendonly", "no")
    try:
        server.start()
        yield server
    finally:
        server.kill()


async def _hold_replies(urls: list[str], how: tuple[str, ...]) -> list[redis.asyncio.Redis]:
    """From clients of their own, make each server hold every reply for :data:`HOLD` s."""
    admins = [redis.asyncio.Redis.from_url(url) for url in urls]
    for admin in admins:
        await admin.ping()  # type: ignore[misc]
        asyncio.create_task(admin.execute_command(*how))  # type: ignore[no-untyped-call]  # noqa: RUF006 - awaited by HOLD
    await asyncio.sleep(0.1)  # the hold reaches the servers before the calls
    return admins


async def _close_under_way(store: StateStore) -> list[Any]:
    """Start 40 reads and writes, close the store while all wait for their replies, and
    return how each ended; every call must end (and aclose return) long before HOLD."""
    calls = [
        asyncio.create_task(
            store.state_set(SCOPE_KEY, f"k{i}", i, "r", "b", "runner")
            if i % 2
            else store.state_get(SCOPE_KEY, f"k{i}")
        )
        for i in range(40)
    ]
    await asyncio.sleep(0.2)  # all sent (or waiting for a connection), none answered
    started = time.monotonic()
    await asyncio.wait_for(store.aclose(), HOLD / 2)
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), HOLD / 2)
    assert time.monotonic() - started < HOLD / 2
    return outcomes


@pytest.mark.redis
@pytest.mark.parametrize("auto_pipeline", [True, False], ids=["auto_pipeline", "direct"])
async def test_aclose_ends_calls_under_way_with_store_closed(
    own_server: RedisServer, auto_pipeline: bool
) -> None:
    store = statekit.connect(own_server.url, auto_pipeline=auto_pipeline)
    assert await store.state_get(SCOPE_KEY, "k") is None  # connected
    admins = await _hold_replies([own_server.url], ("DEBUG", "SLEEP", str(HOLD)))
    outcomes = await _close_under_way(store)
    assert [type(o).__name__ for o in outcomes] == ["StoreClosedError"] * len(outcomes)
    await asyncio.sleep(HOLD)  # the server answers again: nothing was sent again
    for admin in admins:
        assert await admin.dbsize() == 0
        await admin.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_aclose_ends_cluster_calls_under_way_with_store_closed(
    redis_cluster_url: str,
) -> None:
    prefix = f"statekit-test:{uuid.uuid4().hex}:"
    store = statekit.connect(redis_cluster_url, key_prefix=prefix)
    assert await store.state_get(SCOPE_KEY, "k") is None  # the cluster is mapped
    nodes = redis_cluster_url.removeprefix("redis+cluster://").split(",")
    # CLIENT PAUSE holds every client's commands on the session's own cluster.
    pause = ("CLIENT", "PAUSE", str(int(HOLD * 1000)), "ALL")
    admins = await _hold_replies([f"redis://{node}/0" for node in nodes], pause)
    outcomes = await _close_under_way(store)
    assert [type(o).__name__ for o in outcomes] == ["StoreClosedError"] * len(outcomes)
    await asyncio.sleep(HOLD)
    for admin in admins:
        assert [key async for key in admin.scan_iter(match=f"{prefix}*")] == []
        await admin.aclose()


# ---- one store, one event loop after another -------------------------------------------


def _two_runs(url: str, **options: Any) -> None:
    """What a host with a module-level store does: several ``asyncio.run()`` calls."""
    prefix = f"statekit-test:{uuid.uuid4().hex}:"
    store = statekit.connect(url, key_prefix=prefix, **options)

    async def run(i: int) -> tuple[Any, ...]:
        writes = await asyncio.gather(
            *(store.state_set(SCOPE_KEY, f"k{j}", i, "r", "b", "runner") for j in range(8))
        )
        assert all(ok for ok, _ in writes)
        return (
            await store.state_get(SCOPE_KEY, "k0"),
            (await store.describe()).layout,
            len([entry async for entry in store.export()]),
        )

    try:
        assert [asyncio.run(run(i)) for i in range(3)] == [(i, "ok", 8) for i in range(3)]
    finally:

        async def finish() -> None:
            await store.clear_all()
            await store.aclose()

        asyncio.run(finish())


@pytest.mark.redis
@pytest.mark.parametrize("auto_pipeline", [True, False], ids=["auto_pipeline", "direct"])
def test_one_redis_store_serves_one_event_loop_after_another(auto_pipeline: bool) -> None:
    url = service_url("STATEKIT_REDIS_URL")
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    _two_runs(url, auto_pipeline=auto_pipeline, client_name=name)
    gc.collect()  # the sockets of the loops that stopped are closed when collected

    async def our_connections() -> int:
        admin = redis.asyncio.Redis.from_url(url)
        clients = await admin.client_list()
        await admin.aclose()
        return sum(1 for client in clients if client.get("name") == name)

    assert asyncio.run(our_connections()) == 0


@pytest.mark.redis
@pytest.mark.slow
def test_one_cluster_store_serves_one_event_loop_after_another(redis_cluster_url: str) -> None:
    _two_runs(redis_cluster_url)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("auto_pipeline", [True, False], ids=["auto_pipeline", "direct"])
def test_one_sentinel_store_serves_one_event_loop_after_another(
    redis_sentinel_url: str, auto_pipeline: bool
) -> None:
    _two_runs(redis_sentinel_url, auto_pipeline=auto_pipeline)


def test_one_memory_store_serves_one_event_loop_after_another() -> None:
    store = statekit.connect("memory://")
    for i in range(3):
        assert asyncio.run(store.state_set(SCOPE_KEY, "k", i, "r", "b", "runner")) == (True, None)
        assert asyncio.run(store.state_get(SCOPE_KEY, "k")) == i
    asyncio.run(store.aclose())
