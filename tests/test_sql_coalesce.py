"""Coalescing on the SQL backend: concurrent calls go to the server together, and every
caller still gets exactly its own outcome (see :mod:`statekit.backends.sql.coalesce`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlsupport import (
    DIALECTS,
    Place,
    place_of,
    row_locked,
    terminate_connections,
    until_lock_waits,
)

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.sql import SQLBackend, batching
from statekit.backends.sql.coalesce import Coalescer
from statekit.errors import BackendTimeoutError, BackendUnavailableError, StateBackendError

CONTEXT = ScopeContext(runner_id="runner", binding_identity="binding", scope="actor")
SCOPE = "scope-1"


def write(key: str, value: object, scope: str = SCOPE) -> StateWrite:
    return StateWrite(scope, key, json.dumps(value), CONTEXT)


class Batches:
    """The batch sizes a backend's coalescer reports."""

    def __init__(self, backend: SQLBackend) -> None:
        self.sizes: list[int] = []
        backend.recorder.attach(self._batch, lambda seconds: None)

    def _batch(self, kind: str, size: int) -> None:
        if kind == "coalesced":
            self.sizes.append(size)


@pytest.fixture(params=DIALECTS)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    async with place_of(request.param, tmp_path) as found:
        yield found


@pytest.fixture
async def backend(place: Place) -> AsyncIterator[SQLBackend]:
    backend = place.backend()
    await backend.create_schema()
    yield backend
    await backend.aclose()


async def test_concurrent_sets_go_in_batches_and_each_caller_gets_its_version(
    backend: SQLBackend,
) -> None:
    batches = Batches(backend)
    versions = await asyncio.gather(*(backend.set(write(f"k{i}", i)) for i in range(64)))
    assert versions == [1] * 64
    assert max(batches.sizes) > 1, "no call was sent in a batch"
    assert sum(batches.sizes) <= 63  # the first call went alone
    values = await asyncio.gather(*(backend.get(SCOPE, f"k{i}") for i in range(64)))
    assert values == [json.dumps(i) for i in range(64)]


async def test_writes_of_one_key_in_a_batch_apply_in_call_order(backend: SQLBackend) -> None:
    batches = Batches(backend)
    await backend.set(write("warm", 0))
    # Four keys, sixteen writes each, all sent while others are in flight.
    calls = [(f"k{i % 4}", i) for i in range(64)]
    versions = await asyncio.gather(*(backend.set(write(key, value)) for key, value in calls))
    assert max(batches.sizes) > 4
    for key in ("k0", "k1", "k2", "k3"):
        mine = [version for (k, _), version in zip(calls, versions, strict=True) if k == key]
        assert mine == list(range(1, 17)), "versions follow call order"
        last = max(value for k, value in calls if k == key)
        assert await backend.get(SCOPE, key) == json.dumps(last)


async def test_concurrent_reads_each_get_their_own_rows(backend: SQLBackend) -> None:
    await backend.set_many([write(f"k{i}", {"n": i}) for i in range(32)])
    await backend.set(write("other", "x", scope="scope-2"))
    batches = Batches(backend)
    keys = [f"k{i % 40}" for i in range(64)]  # k32..k39 do not exist
    values, versioned, snapshots = await asyncio.gather(
        asyncio.gather(*(backend.get(SCOPE, key) for key in keys)),
        asyncio.gather(*(backend.get_versioned(SCOPE, key) for key in keys)),
        asyncio.gather(*(backend.read_scopes([SCOPE, "scope-2", "none"]) for _ in range(8))),
    )
    expected = [json.dumps({"n": int(k[1:])}) if int(k[1:]) < 32 else None for k in keys]
    assert values == expected
    assert versioned == [(v, 1 if v is not None else 0) for v in expected]
    assert all(s == snapshots[0] for s in snapshots)
    assert len(snapshots[0][SCOPE]) == 32
    assert snapshots[0]["scope-2"] == {"other": '"x"'}
    assert snapshots[0]["none"] == {}
    assert max(batches.sizes) > 1


@pytest.mark.parametrize(
    "odd",
    ["", "a\x1fb", "\x1e", "x\x1e", "\x1f"],
    ids=["empty", "separator", "null-mark", "null-mark-inside", "bare-separator"],
)
async def test_batched_text_holding_the_join_characters_is_written_as_given(
    backend: SQLBackend, odd: str
) -> None:
    """A batch's text parameters go joined by two control characters (PostgreSQL):
    values holding them, empty ones and ``None`` ones mixed with others are written
    exactly as given (see :meth:`batching.Plan.arguments`)."""
    batches = Batches(backend)
    await backend.set(write("warm", 0))
    contexts = [
        ScopeContext("runner", "binding", "actor", conversation_id=None if i % 2 else odd)
        for i in range(16)
    ]
    keys = [f"{odd}k{i}" if i % 3 else f"k{i}" for i in range(16)]
    values = [json.dumps(odd + str(i)) for i in range(16)]
    writes = [StateWrite(SCOPE, k, v, c) for k, v, c in zip(keys, values, contexts, strict=True)]
    assert await asyncio.gather(*(backend.set(w) for w in writes)) == [1] * 16
    assert max(batches.sizes) > 1
    assert await asyncio.gather(*(backend.get(SCOPE, k) for k in keys)) == values
    exported = {entry.state_key: entry async for entry in backend.iter_entries()}
    for key, context in zip(keys, contexts, strict=True):
        assert exported[key].context.conversation_id == context.conversation_id


def test_a_plan_joins_text_parameters_unless_a_value_holds_the_join_characters() -> None:
    found = batching.plan(
        "SELECT a FROM t WHERE a = $1::VARCHAR AND b = $2::TEXT AND c < $3::FLOAT"
    )
    assert found is not None
    assert found.joined is not None
    sql, arguments = found.arguments([("a", None, 1.0), ("b", None, 2.0)])
    assert sql == found.joined
    assert arguments == ["a\x1fb", None, (1.0, 2.0)]
    sql, arguments = found.arguments([("a", "x", 1.0), ("b", None, 2.0)])
    assert (sql, arguments[1]) == (found.joined, "x\x1f\x1e")
    for calls in ([("a\x1f", "x", 1.0), ("b", "y", 2.0)], [("a", "\x1e", 1.0), ("b", "y", 2.0)]):
        assert found.arguments(calls) == (found.sql, found.arrays(calls))
    one_empty = [("", "x", 1.0)]
    assert found.arguments(one_empty) == (found.sql, found.arrays(one_empty))
    assert batching.plan("SELECT a FROM t WHERE c < $1::FLOAT").joined is None  # type: ignore[union-attr]


async def test_a_call_with_nothing_in_flight_is_sent_alone(backend: SQLBackend) -> None:
    batches = Batches(backend)
    for i in range(5):
        assert await backend.set(write("k", i)) == i + 1
        assert await backend.get(SCOPE, "k") == json.dumps(i)
    assert batches.sizes == []


async def test_without_coalescing_no_call_is_batched(place: Place) -> None:
    backend = place.backend(coalesce=False)
    await backend.create_schema()
    batches = Batches(backend)
    try:
        await asyncio.gather(*(backend.set(write(f"k{i % 3}", i)) for i in range(32)))
        assert batches.sizes == []
        assert await backend.get(SCOPE, "k2") is not None
    finally:
        await backend.aclose()


def test_the_url_turns_coalescing_off(tmp_path: Path) -> None:
    on = SQLBackend.from_url(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    off = SQLBackend.from_url(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}?coalesce=false")
    assert on._coalescer is not None
    assert off._coalescer is None


async def _poison(place: Place, backend: SQLBackend) -> None:
    """A trigger that refuses any row whose key is ``poison``: an error of one row."""
    table = backend.table_fullname
    if place.postgres:
        statements = [
            f"CREATE FUNCTION {place.schema}.poison() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'poisoned row'; END $$",
            f"CREATE TRIGGER poison BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
            f"WHEN (NEW.state_key = 'poison') EXECUTE FUNCTION {place.schema}.poison()",
        ]
    else:
        statements = [
            f"CREATE TRIGGER poison_{event} BEFORE {event} ON {table} "
            "WHEN NEW.state_key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
            for event in ("INSERT", "UPDATE")
        ]
    async with backend.engine.begin() as conn:
        for statement in statements:
            await conn.exec_driver_sql(statement)


async def test_an_error_of_one_row_fails_that_caller_only(
    place: Place, backend: SQLBackend
) -> None:
    await _poison(place, backend)
    batches = Batches(backend)
    keys = [f"k{i}" for i in range(40)]
    keys[20] = "poison"
    outcomes = await asyncio.gather(
        *(backend.set(write(key, i)) for i, key in enumerate(keys)), return_exceptions=True
    )
    assert max(batches.sizes) > 1
    assert isinstance(outcomes[20], StateBackendError)
    assert [o for i, o in enumerate(outcomes) if i != 20] == [1] * 39
    for i, key in enumerate(keys):
        expected = None if key == "poison" else json.dumps(i)
        assert await backend.get(SCOPE, key) == expected


async def test_a_cancelled_caller_never_affects_the_others(backend: SQLBackend) -> None:
    await backend.set(write("warm", 0))
    tasks = [asyncio.ensure_future(backend.set(write(f"k{i}", i))) for i in range(48)]
    for n in range(3):
        await asyncio.sleep(0)
        tasks[10 + n].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if 10 <= i < 13:
            assert isinstance(outcome, asyncio.CancelledError)
            # Landed or never will: what a read sees now stays.
            first = await backend.get(SCOPE, f"k{i}")
            assert first in (None, json.dumps(i))
            await asyncio.sleep(0.05)
            assert await backend.get(SCOPE, f"k{i}") == first
        else:
            assert outcome == 1
            assert await backend.get(SCOPE, f"k{i}") == json.dumps(i)


@pytest.mark.postgres
async def test_a_lost_connection_fails_every_write_of_the_batch_and_resends_none(
    tmp_path: Path,
) -> None:
    async with place_of("postgres", tmp_path) as place:
        name = "statekit-coalesce-lost"
        backend = place.backend(place.engine(server_settings={"application_name": name}))
        await backend.create_schema()
        await backend.set(write("locked", 0))
        try:
            async with row_locked(backend, "locked"):
                blocked = asyncio.ensure_future(backend.set(write("locked", 1)))
                await until_lock_waits(name, waiting=True)
                batch = [asyncio.ensure_future(backend.set(write(f"k{i}", i))) for i in range(20)]
                batch.append(asyncio.ensure_future(backend.set(write("locked", 2))))
                await asyncio.sleep(0.2)  # the batch is sent and waits for the lock too
                assert await terminate_connections(name) >= 2
                outcomes = await asyncio.gather(blocked, *batch, return_exceptions=True)
            assert all(isinstance(o, BackendUnavailableError) for o in outcomes), outcomes
            assert not any(isinstance(o, BackendTimeoutError) for o in outcomes)
            await asyncio.sleep(0.2)
            # Rolled back by the server and never sent again.
            assert [await backend.get(SCOPE, f"k{i}") for i in range(20)] == [None] * 20
            assert await backend.get(SCOPE, "locked") == json.dumps(0)
        finally:
            await backend.aclose()


def _timing_out(place: Place, name: str, **options: object) -> SQLBackend:
    """A backend whose statements and waits time out after a second."""
    return SQLBackend.from_url(
        place.url, schema=place.schema, timeout=1, application_name=name, **options
    )


@pytest.mark.postgres
async def test_a_batch_that_times_out_fails_its_calls_with_a_timeout(tmp_path: Path) -> None:
    async with place_of("postgres", tmp_path) as place:
        name = "statekit-coalesce-timeout"
        backend = _timing_out(place, name)
        await backend.set(write("locked", 0))
        try:
            async with row_locked(backend, "locked") as lock:
                calls = [backend.set(write("locked", i)) for i in range(1, 9)]
                outcomes = await asyncio.gather(*calls, return_exceptions=True)
                # Released only once the server has ended the statements (see
                # test_sql_backend's blocked statement).
                await until_lock_waits(name, waiting=False)
                await lock.rollback()
            assert all(isinstance(o, BackendTimeoutError) for o in outcomes), outcomes
            assert await backend.get(SCOPE, "locked") == json.dumps(0)
        finally:
            await backend.aclose()


class _StuckGateway:
    """A gateway whose statements end only when told: a stuck batch, for the queue."""

    def __init__(self) -> None:
        self.sent: list[object] = []
        self.released = asyncio.Event()

    async def run(
        self, run: object, sql: str, arguments: object, what: str, **_: object
    ) -> list[object]:
        self.sent.append(arguments)
        await self.released.wait()
        return []


async def test_a_call_waits_in_the_queue_at_most_the_timeout() -> None:
    gateway = _StuckGateway()
    coalescer = Coalescer(
        gateway,  # type: ignore[arg-type]
        postgres=False,
        timeout=0.2,
        on_batch=lambda size: None,
    )
    alone = asyncio.ensure_future(coalescer.run("SELECT 1", ("alone",), "get", read=True))
    await asyncio.sleep(0)
    sent = asyncio.ensure_future(coalescer.run("SELECT 1", ("sent",), "get", read=True))
    await asyncio.sleep(0.01)
    # Behind the batch under way: it waits in the queue, then fails and is never sent.
    with pytest.raises(BackendTimeoutError, match="queue"):
        await coalescer.run("SELECT 1", ("queued",), "get", read=True)
    assert gateway.sent == [("alone",), ("sent",)]
    gateway.released.set()
    assert list(await asyncio.gather(alone, sent)) == [[], []]


# ---- the batch plans ---------------------------------------------------------------------


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=40))
def test_rounds_hold_each_key_once_and_keep_each_key_s_order(keys: list[str]) -> None:
    calls = [("scope", key, n) for n, key in enumerate(keys)]
    groups = batching.rounds((0, 1), calls)
    assert sorted(i for group in groups for i in group) == list(range(len(keys)))
    for group in groups:
        assert len({keys[i] for i in group}) == len(group)
        assert [keys[i] for i in group] == sorted(keys[i] for i in group)
    # The n-th write of a key is in round n: a key's writes apply in call order.
    round_of = {i: n for n, group in enumerate(groups) for i in group}
    for key in set(keys):
        mine = [i for i, k in enumerate(keys) if k == key]
        assert [round_of[i] for i in mine] == list(range(len(mine)))


def test_statements_without_typed_parameters_have_no_plan() -> None:
    assert batching.plan("SELECT a FROM t WHERE a = $1") is None
    assert batching.plan("DELETE FROM t WHERE a = $1::VARCHAR") is None
    assert batching.plan("SELECT a FROM t WHERE a = $2::VARCHAR") is None
    found = batching.plan("SELECT a FROM t WHERE a = $1::VARCHAR AND b <= $2::FLOAT")
    assert found is not None
    assert found.types == ("VARCHAR", "FLOAT")
    assert found.key is None


def test_the_private_aiosqlite_api_a_sqlite_batch_uses_is_there() -> None:
    """``batching.run_sqlite`` runs a batch on aiosqlite's thread through
    ``Connection._execute`` and the ``sqlite3`` connection ``_conn``: pinned here for the
    aiosqlite versions ``pyproject.toml`` allows."""
    import inspect

    import aiosqlite

    assert inspect.iscoroutinefunction(aiosqlite.Connection._execute)
    assert isinstance(aiosqlite.Connection._conn, property)
