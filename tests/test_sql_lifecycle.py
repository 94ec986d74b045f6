"""The SQL backend's lifetime: the event loops it is used from, ``aclose()``, cancellation.

A backend is often a module-level object used from one ``asyncio.run()`` after another:
it moves to each new loop. After ``aclose()`` every method raises ``StoreClosedError``,
calls still waiting for a connection too, and nothing hangs. Calls cancelled at any point
(twice) leave no task, connection or warning behind.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import await_only
from sqlsupport import postgres_url, private_schema, row_locked, until_lock_waits

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.sql import SQLBackend, postgres_connect
from statekit.errors import StateBackendError, StoreClosedError

CTX = ScopeContext("runner-1", "binding-1", "runner")
ENGINES = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("memory", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]
Factory = Callable[..., SQLBackend]


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    yield from private_schema()


@pytest.fixture
def application_name() -> str:
    """The ``application_name`` of one test's PostgreSQL connections, to count them."""
    return f"statekit-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_backend(request: pytest.FixtureRequest, tmp_path: Path, application_name: str) -> Factory:
    """Backends of the engine named by the test's ``make_backend`` parameter."""
    engine = request.param

    def make(**options: Any) -> SQLBackend:
        if engine == "sqlite":
            return SQLBackend.from_url(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}", **options)
        if engine == "memory":
            return SQLBackend.from_url("sqlite+aiosqlite:///:memory:", **options)
        schema = request.getfixturevalue("pg_schema")
        return SQLBackend.from_url(
            postgres_url(), schema=schema, application_name=application_name, **options
        )

    return make


async def server_connections(application_name: str) -> int:
    """How many PostgreSQL sessions carry ``application_name``."""
    engine = create_async_engine(postgres_url())
    try:
        async with engine.connect() as conn:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
            return int((await conn.execute(query, {"name": application_name})).scalar_one())
    finally:
        await engine.dispose()


def aiosqlite_threads() -> int:
    return sum("_connection_worker_thread" in t.name for t in threading.enumerate())


def threads_settle_at(count: int) -> bool:
    """Whether the aiosqlite worker threads come down to ``count`` within two seconds
    (a stopped connection's thread ends after the statement it is running)."""
    deadline = time.monotonic() + 2
    while aiosqlite_threads() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    return aiosqlite_threads() == count


# ---- event loops ----------------------------------------------------------------------


@pytest.mark.parametrize("make_backend", ENGINES, indirect=True)
def test_a_backend_serves_one_asyncio_run_after_another(make_backend: Factory) -> None:
    backend = make_backend(pool_size=4)

    async def round_trip(n: int) -> list[str | None]:
        # Concurrent calls, so that several pooled connections of the loop are used.
        await asyncio.gather(
            *(backend.set(StateWrite("s", f"k{i}", str(n), CTX)) for i in range(8))
        )
        return await asyncio.gather(*(backend.get("s", f"k{i}") for i in range(8)))

    for n in range(4):
        assert asyncio.run(round_trip(n)) == [str(n)] * 8
    asyncio.run(backend.aclose())


@pytest.mark.postgres
def test_each_loop_closes_its_postgres_connections_as_it_shuts_down(
    pg_schema: str, application_name: str
) -> None:
    backend = SQLBackend.from_url(
        postgres_url(), schema=pg_schema, pool_size=4, application_name=application_name
    )

    async def busy() -> int:
        await asyncio.gather(*(backend.get("s", f"k{i}") for i in range(8)))
        return await server_connections(application_name)

    for _ in range(5):
        assert asyncio.run(busy()) > 0
        # Closed by the loop's shutdown, not left for the garbage collector.
        assert asyncio.run(server_connections(application_name)) == 0
    asyncio.run(backend.aclose())


@pytest.mark.postgres
def test_a_loop_closed_by_hand_leaves_the_backend_working(pg_schema: str) -> None:
    backend = SQLBackend.from_url(postgres_url(), schema=pg_schema)
    for n in range(3):
        loop = asyncio.new_event_loop()
        try:  # no shutdown_asyncgens(): the connections cannot be closed on their loop
            loop.run_until_complete(backend.set(StateWrite("s", "k", str(n), CTX)))
            assert loop.run_until_complete(backend.get("s", "k")) == str(n)
        finally:
            loop.close()
    asyncio.run(backend.aclose())


@pytest.mark.sqlite
def test_two_loops_running_at_once_are_refused_by_name(tmp_path: Path) -> None:
    backend = SQLBackend.from_url(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(backend.set(StateWrite("s", "k", "1", CTX)), other).result(
            10
        )
        with pytest.raises(StateBackendError, match="another running event loop"):
            asyncio.run(backend.get("s", "k"))
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(10)
    other.close()
    assert asyncio.run(backend.get("s", "k")) == "1"  # that loop has stopped: this one works
    asyncio.run(backend.aclose())


# ---- aclose -----------------------------------------------------------------------------


async def _export(backend: SQLBackend) -> list[Any]:
    return [entry async for entry in backend.iter_entries()]


CALLS: dict[str, Callable[[SQLBackend], Coroutine[Any, Any, Any]]] = {
    "get": lambda b: b.get("s", "k"),
    "get_versioned": lambda b: b.get_versioned("s", "k"),
    "read_scopes": lambda b: b.read_scopes(["s"]),
    "list_keys": lambda b: b.list_keys("s", "", 10, None),
    "iter_entries": _export,
    "set": lambda b: b.set(StateWrite("s", "k", "2", CTX)),
    "set_versioned": lambda b: b.set(StateWrite("s", "k", "2", CTX), 1),
    "set_many": lambda b: b.set_many([StateWrite("s", "k", "2", CTX)]),
    "delete": lambda b: b.delete("s", "k"),
    "clear": lambda b: b.clear(),
    "describe": lambda b: b.describe(),
    "create_schema": lambda b: b.create_schema(),
}


@pytest.mark.parametrize("make_backend", ENGINES, indirect=True)
@pytest.mark.parametrize("method", sorted(CALLS))
async def test_every_method_after_aclose_raises_store_closed(
    make_backend: Factory, method: str
) -> None:
    backend = make_backend()
    await backend.set(StateWrite("s", "k", "1", CTX))
    await backend.aclose()
    with pytest.raises(StoreClosedError):
        await CALLS[method](backend)
    await backend.aclose()  # closing again does nothing


@pytest.mark.parametrize("make_backend", ENGINES, indirect=True)
async def test_aclose_during_calls_ends_each_with_its_result_or_store_closed(
    make_backend: Factory, application_name: str
) -> None:
    backend = make_backend(pool_size=2)
    await backend.set(StateWrite("s", "k", "1", CTX))
    calls = [
        asyncio.ensure_future(
            backend.get("s", "k") if i % 2 else backend.set(StateWrite("s", "k", "1", CTX))
        )
        for i in range(40)
    ]
    await asyncio.sleep(0)  # two calls hold the connections, the rest wait for them
    started = time.monotonic()
    await backend.aclose()
    assert time.monotonic() - started < 2
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    closed = [r for r in results if isinstance(r, StoreClosedError)]
    done = [r for r in results if not isinstance(r, BaseException)]
    assert len(closed) + len(done) == len(calls), results
    assert closed
    assert done
    assert all(r == "1" or isinstance(r, int) for r in done), done
    if backend.engine.dialect.name == "postgresql":
        assert await server_connections(application_name) == 0


@pytest.mark.parametrize("make_backend", ENGINES, indirect=True)
async def test_aclose_during_an_export_ends_it_with_store_closed(make_backend: Factory) -> None:
    threads = aiosqlite_threads()
    backend = make_backend()
    await backend.set_many([StateWrite("s", f"k{i}", "1", CTX) for i in range(3)])
    export = backend.iter_entries()
    await anext(export)
    started = time.monotonic()
    await backend.aclose()  # from the task that holds the export: must not wait for it
    assert time.monotonic() - started < 1
    with pytest.raises(StoreClosedError):
        await anext(export)
    # The export's connection was closed with the backend, not returned to a pool.
    assert threads_settle_at(threads)


# ---- cancellation -----------------------------------------------------------------------


async def _cancel_twice_mid_flight(backend: SQLBackend, calls: int) -> int:
    """Run ``calls`` calls, each cancelled twice at random points; how many were cancelled."""
    random.seed(11)
    await backend.set(StateWrite("s", "k", "0", CTX))
    cancelled = 0
    for i in range(calls):
        call = (
            backend.set(StateWrite("s", f"k{i % 50}", str(i), CTX))
            if i % 2
            else backend.get("s", "k")
        )
        task = asyncio.ensure_future(call)
        for _ in range(random.randint(1, 4)):
            await asyncio.sleep(0)
        task.cancel()
        for _ in range(random.randint(0, 3)):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            cancelled += 1
    assert await backend.get("s", "k") == "0"  # the backend works on
    await asyncio.sleep(0.2)
    pool = backend.engine.pool
    if isinstance(pool, QueuePool):  # an in-memory database has its one connection
        assert pool.checkedout() == 0
    await backend.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    return cancelled


@pytest.mark.parametrize(
    "make_backend",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("memory", marks=pytest.mark.sqlite),
    ],
    indirect=True,
)
def test_calls_cancelled_twice_mid_flight_leave_nothing_behind(make_backend: Factory) -> None:
    threads = aiosqlite_threads()
    # Reads on aiosqlite's thread: a read on the event loop ends before it can be cancelled.
    backend = make_backend(reads_on_loop=False)
    reports: list[str] = []
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, context: reports.append(context["message"]))
    gc.collect()  # what earlier tests left for the collector is reported now, not below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cancelled = loop.run_until_complete(_cancel_twice_mid_flight(backend, 2000))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
        gc.collect()  # a task stranded inside SQLAlchemy is reported when collected
    assert cancelled > 1000  # mid-flight: most calls had not finished
    assert reports == []  # e.g. "Task was destroyed but it is pending!"
    assert [str(w.message) for w in caught] == []
    assert threads_settle_at(threads)


async def _first_call_cancelled_twice(path: Path) -> None:
    backend = SQLBackend.from_url(f"sqlite+aiosqlite:///{path}")
    opening, proceed = asyncio.Event(), asyncio.Event()

    def held(_dbapi_connection: Any, _record: Any) -> None:
        opening.set()
        await_only(proceed.wait())

    event.listen(backend.engine.sync_engine, "connect", held, once=True)
    caller = asyncio.ensure_future(backend.get("s", "k"))
    await opening.wait()  # the first call is opening the connection that makes the table
    for _ in range(2):
        caller.cancel()
        await asyncio.sleep(0)
    assert not caller.done()  # held back while the table is made
    proceed.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await backend.get("s", "k") is None  # the table is there
    await backend.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.sqlite
def test_a_first_call_cancelled_twice_while_the_table_is_made_waits_for_it(
    tmp_path: Path,
) -> None:
    """The first call makes the table on SQLAlchemy's own connection. Cancelled twice
    while that connection opens, SQLAlchemy would terminate it and strand its close task
    (pending forever); instead the call holds its cancellation back until the table is
    made, and nothing is left once the backend is closed."""
    reports: list[str] = []
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, context: reports.append(context["message"]))
    try:
        loop.run_until_complete(_first_call_cancelled_twice(tmp_path / "state.db"))
    finally:
        loop.close()  # not asyncio.run(), which would wait for a stranded task forever
    gc.collect()  # a stranded task is reported when collected
    assert reports == []  # e.g. "Task was destroyed but it is pending!"


@pytest.mark.postgres
async def test_a_cancelled_statement_frees_its_place_once_the_server_ended_its_connection(
    pg_schema: str, application_name: str
) -> None:
    """A statement cancelled while it waits for a row lock: its connection is closed, and
    the next call gets the pool's only place once the server has ended that connection,
    so the server never holds more of the backend's connections than the pool's size.
    (Dropped on the client's side only, the server's session would wait for the lock on,
    next to the next call's.)"""
    backend = SQLBackend.from_url(
        postgres_url(),
        schema=pg_schema,
        application_name=application_name,
        pool_size=1,
        max_overflow=0,
        timeout=30,
    )
    try:
        await backend.set(StateWrite("s", "locked", "1", CTX))
        async with row_locked(backend, "locked") as conn:
            blocked = asyncio.ensure_future(backend.set(StateWrite("s", "locked", "2", CTX)))
            await until_lock_waits(application_name, waiting=True)
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked
            assert await backend.get("s", "other") is None  # the lock is still held
            assert await server_connections(application_name) == 1
            await conn.rollback()
        assert await backend.get("s", "locked") == "1"  # the cancelled write never landed
    finally:
        await backend.clear()
        await backend.aclose()


class _HeldConnect:
    """asyncpg's ``connect`` as a test holds it: the attempt ends when ``done`` is set."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.closed = False

    async def __call__(self, *args: Any, **kwargs: Any) -> _HeldConnect:
        await self.done.wait()
        return self

    async def close(self, timeout: float | None = None) -> None:
        self.closed = True


async def test_a_connect_cancelled_twice_ends_and_closes_before_the_cancellation_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool frees a connection's place when the attempt to open it fails: a cancelled
    caller's attempt runs to its end and its connection is closed first."""
    asyncpg = pytest.importorskip("asyncpg")
    held = _HeldConnect()
    monkeypatch.setattr(asyncpg, "connect", held)
    caller = asyncio.ensure_future(postgres_connect.connect(timeout=5))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0)
    caller.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not caller.done()  # held back while the attempt is under way
    held.done.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert held.closed
    assert await postgres_connect.connect(timeout=5) is held  # not cancelled: the connection
