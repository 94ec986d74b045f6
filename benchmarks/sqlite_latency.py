"""Where the time of one SQLite get goes, at 1 in flight, next to the peers.

    python -m benchmarks.sqlite_latency [--runs 5] [--calls 4000] [--chunk 250]

Every contender reads one existing key of its own file in a fresh temporary directory,
one call at a time, the 250-byte JSON object of :data:`benchmarks.workload.VALUE`:

==================  ==================================================================
contender           call
==================  ==================================================================
statekit            ``StateStore.state_get(scope_key, key)`` on
                    ``statekit.connect("sqlite+aiosqlite:///<dir>/x.db")``
diskstore           py-key-value's ``DiskStore.get(key)`` over
                    ``diskcache.Cache(dir, eviction_policy="none", sqlite_synchronous=2)``:
                    sqlite3 on the event loop, an envelope decoded
raw aiosqlite       ``execute_fetchall("SELECT value_json ... WHERE scope_key = ? AND
                    state_key = ?")`` + ``json.loads``, statekit's table and index
raw sqlite3         the same statement with sqlite3 on the event loop + ``json.loads``
==================  ==================================================================

statekit reads a file's rows with sqlite3 on the event loop by default (see
``statekit/backends/sql/loop_reads.py``); ``statekit on thread`` is the same call with
``reads_on_loop=False``, on aiosqlite's thread. The layers of that call are timed as
contenders of their own, each skipping one more layer, so the difference between two
neighbours is what that layer costs (``--no-layers`` skips them):

====================  ================================================================
backend.get           ``SQLBackend.get``: no validation, no decode, no expiry wrapper
gateway.run           ``Gateway.run(driver.run, sql, args, ...)``: no arguments built
task+greenlet+pool    a task per call (``holdback.to_the_end``), ``greenlet_spawn`` and a
                      pool checkout and checkin: the path of a call that finds no
                      connection kept (before this module, every call)
greenlet+pool         ``greenlet_spawn(driver.run, ...)`` with a checkout: no task
execute               aiosqlite's ``execute_fetchall`` on a connection of statekit's
====================  ================================================================

The contenders take turns in chunks of ``--chunk`` calls, so a shared machine's load hits
them alike; each run's ratios compare the contenders' rates in that run, and the medians
over ``--runs`` runs are printed (with the median microseconds per call,
on the clock and on the loop thread's CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.util import greenlet_spawn

from benchmarks.workload import VALUE, make_identity
from statekit import StateStore, connect
from statekit.backends.sql import SQLBackend, driver
from statekit.errors import ConfigurationError

#: A contender: one call that reads the key.
Call = Callable[[], Awaitable[Any]]
SCOPE = "actor"
KEY = "key.0001"
#: What the ratios are taken against.
BASELINES = ("diskstore", "raw aiosqlite")


async def _statekit_store(
    where: Path, stack: AsyncExitStack, **options: Any
) -> tuple[StateStore, str]:
    """A store on ``where``'s file holding the key, and the key's scope key."""
    store: StateStore = connect(f"sqlite+aiosqlite:///{where / 'x.db'}", telemetry=False, **options)
    stack.push_async_callback(store.aclose)
    who = make_identity("statekit-latency", "latency")
    ok, error = await store.apply_update_from_event(
        who.event, who.binding, who.runner, SCOPE, KEY, VALUE
    )
    assert ok, error
    scope_key = who.scope_keys[SCOPE]
    assert await store.state_get(scope_key, KEY) == VALUE
    return store, scope_key


async def _statekit(where: Path, stack: AsyncExitStack, layers: bool) -> dict[str, Call]:
    """statekit's call, the same on aiosqlite's thread (where the option exists) and,
    with ``layers``, the thread's layers."""
    store, scope_key = await _statekit_store(where, stack)
    calls: dict[str, Call] = {"statekit": lambda: store.state_get(scope_key, KEY)}
    try:
        on_thread, _ = await _statekit_store(where, stack, reads_on_loop=False)
    except ConfigurationError:  # a statekit without the option
        on_thread = store
    else:
        calls["statekit on thread"] = lambda: on_thread.state_get(scope_key, KEY)
    if layers:
        calls.update(await _layers(on_thread, scope_key, stack))
    return calls


async def _layers(store: StateStore, scope_key: str, stack: AsyncExitStack) -> dict[str, Call]:
    backend = store.backend
    assert isinstance(backend, SQLBackend)
    gateway = backend._gateway
    statement = backend._statements.get
    arguments = statement.arguments(
        {"scope_key": scope_key, "state_key": KEY, "now": backend.clock()}
    )
    sql = statement.sql
    # Connections that never keep one: each call checks out of the pool, as without a
    # connection kept from the call before.
    pooled = driver.Connections(backend.engine.sync_engine, lambda: False, 5.0)
    # A connection of statekit's pool, held for the layer below the checkout.
    fairy = await greenlet_spawn(backend.engine.sync_engine.pool.connect)
    stack.push_async_callback(greenlet_spawn, fairy.close)
    held = fairy.driver_connection
    assert held is not None
    from statekit.backends.sql.holdback import to_the_end

    return {
        "backend.get": lambda: backend.get(scope_key, KEY),
        "gateway.run": lambda: gateway.run(driver.run, sql, arguments, "get", read=True),
        "task+greenlet+pool": lambda: to_the_end(
            greenlet_spawn(driver.run, pooled, sql, arguments)
        ),
        "greenlet+pool": lambda: greenlet_spawn(driver.run, pooled, sql, arguments),
        "execute": lambda: held.execute_fetchall(sql, arguments),
    }


async def _diskstore(where: Path, stack: AsyncExitStack) -> dict[str, Call]:
    import diskcache
    from key_value.aio.stores.disk import DiskStore

    cache = diskcache.Cache(str(where / "disk"), eviction_policy="none", sqlite_synchronous=2)
    store = DiskStore(disk_cache=cache)
    stack.callback(cache.close)
    await store.put(KEY, VALUE)
    assert await store.get(KEY) == VALUE
    return {"diskstore": lambda: store.get(KEY)}


def _raw_table(path: Path) -> None:
    """statekit's table on a file of its own (its columns that a get reads, its index)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            "CREATE TABLE statekit_state (id INTEGER PRIMARY KEY, scope_key TEXT NOT NULL, "
            "state_key TEXT NOT NULL, value_json TEXT NOT NULL, UNIQUE (scope_key, state_key))"
        )
        conn.execute(
            "INSERT INTO statekit_state (scope_key, state_key, value_json) VALUES (?, ?, ?)",
            ("scope", KEY, json.dumps(VALUE)),
        )
    conn.close()


_RAW_GET = "SELECT value_json FROM statekit_state WHERE scope_key = ? AND state_key = ?"


async def _raw(where: Path, stack: AsyncExitStack) -> dict[str, Call]:
    import aiosqlite

    path = where / "raw.db"
    _raw_table(path)
    threaded = await aiosqlite.connect(path, isolation_level=None)
    stack.push_async_callback(threaded.close)
    on_loop = sqlite3.connect(path, isolation_level=None)
    stack.callback(on_loop.close)
    arguments = ("scope", KEY)

    async def raw_aiosqlite() -> Any:
        rows = await threaded.execute_fetchall(_RAW_GET, arguments)
        return json.loads(next(iter(rows))[0])

    async def raw_sqlite3() -> Any:
        rows = on_loop.execute(_RAW_GET, arguments).fetchall()
        return json.loads(rows[0][0])

    assert await raw_aiosqlite() == VALUE
    assert await raw_sqlite3() == VALUE
    return {"raw aiosqlite": raw_aiosqlite, "raw sqlite3": raw_sqlite3}


@asynccontextmanager
async def contenders(layers: bool) -> AsyncIterator[dict[str, Call]]:
    """Every contender, each on a file of its own in one temporary directory."""
    where = Path(tempfile.mkdtemp(prefix="statekit-sqlite-latency-"))
    try:
        async with AsyncExitStack() as stack:
            calls: dict[str, Call] = {}
            calls.update(await _statekit(where, stack, layers))
            for opener in (_diskstore, _raw):
                calls.update(await opener(where, stack))
            yield calls
    finally:
        shutil.rmtree(where, ignore_errors=True)


async def one_run(
    calls: dict[str, Call], total: int, chunk: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Microseconds per call of each contender over ``total`` calls, taking turns: on
    the clock, and on the event loop's thread (its CPU: what the call costs the loop,
    without the waits for aiosqlite's thread)."""
    spent = dict.fromkeys(calls, 0.0)
    busy = dict.fromkeys(calls, 0.0)
    done = dict.fromkeys(calls, 0)
    while min(done.values()) < total:
        for name, call in calls.items():
            start, cpu = time.perf_counter(), time.thread_time()
            for _ in range(chunk):
                await call()
            spent[name] += time.perf_counter() - start
            busy[name] += time.thread_time() - cpu
            done[name] += chunk
    return (
        {name: spent[name] / done[name] * 1e6 for name in calls},
        {name: busy[name] / done[name] * 1e6 for name in calls},
    )


async def main(runs: int, total: int, chunk: int, layers: bool) -> None:
    async with contenders(layers) as calls:
        await one_run(calls, chunk, chunk)  # warm-up: caches, first statements
        timed = [await one_run(calls, total, chunk) for _ in range(runs)]
    per_run = [clock for clock, _ in timed]
    print(f"SQLite get at 1 in flight: median of {runs} runs, {total} calls each")
    header = "contender".ljust(20) + "us/call".rjust(9) + "loop CPU us".rjust(13)
    header += "".join(f"  vs {b}".rjust(len(b) + 5) for b in BASELINES)
    print(header)
    for name in calls:
        micros = statistics.median(run[name] for run in per_run)
        cpu = statistics.median(loop[name] for _, loop in timed)
        ratios = [statistics.median(run[b] / run[name] for run in per_run) for b in BASELINES]
        line = name.ljust(20) + f"{micros:9.1f}" + f"{cpu:13.1f}"
        line += "".join(
            f"{r:.2f}x".rjust(len(b) + 5) for b, r in zip(BASELINES, ratios, strict=True)
        )
        print(line)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=4000, help="calls per contender per run")
    parser.add_argument("--chunk", type=int, default=250, help="calls per turn")
    parser.add_argument("--no-layers", action="store_true", help="statekit and the peers only")
    return parser.parse_args()


if __name__ == "__main__":
    options = _arguments()
    asyncio.run(main(options.runs, options.calls, options.chunk, not options.no_layers))
