"""SQLite calls that follow each other keep their connection: checked out once, given
back to the pool as soon as the loop turns with no call under way, and a caller
cancelled on a kept connection still sees the cancellation only once its statement
ended (see ``Gateway._direct`` and ``Connections.return_soon``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.sql import SQLBackend

pytestmark = pytest.mark.sqlite

CTX = ScopeContext("runner-1", "binding-1", "runner")


def _write(value: str) -> StateWrite:
    return StateWrite("s", "k", value, CTX)


def _counting_checkouts(backend: SQLBackend) -> list[object]:
    checkouts: list[object] = []
    event.listen(backend.engine.sync_engine, "checkout", lambda *_: checkouts.append(1))
    return checkouts


async def test_calls_that_follow_each_other_check_out_once(tmp_path: Path) -> None:
    backend = SQLBackend.from_url(f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}")
    try:
        await backend.set(_write('"0"'))
        await asyncio.sleep(0.05)  # the loop turned: the connection is back in the pool
        pool: Any = backend.engine.pool
        assert pool.checkedout() == 0
        checkouts = _counting_checkouts(backend)
        for n in range(20):
            await backend.set(_write(f'"{n}"'))
            assert await backend.get("s", "k") == f'"{n}"'
        assert len(checkouts) == 1
        assert pool.checkedout() == 1  # kept while the calls follow each other...
        await asyncio.sleep(0.05)
        assert pool.checkedout() == 0  # ...and back once they pause
    finally:
        await backend.aclose()


async def test_a_host_engine_gets_each_connection_back_as_the_call_returns(
    tmp_path: Path,
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'host.db'}")
    backend = SQLBackend(engine)
    try:
        for n in range(3):
            await backend.set(_write(f'"{n}"'))
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await backend.aclose()
        await engine.dispose()


async def test_a_call_cancelled_on_a_kept_connection_ends_after_its_statement(
    tmp_path: Path,
) -> None:
    backend = SQLBackend.from_url(f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}")
    try:
        await backend.create_schema()
        checkouts = _counting_checkouts(backend)

        async def write_then_be_cancelled() -> None:
            await backend.set(_write('"first"'))
            # The cancellation comes at the loop's next turn, while the second write (on
            # the connection the first kept) is on aiosqlite's thread.
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().call_soon(task.cancel)
            await backend.set(_write('"second"'))

        with pytest.raises(asyncio.CancelledError):
            await asyncio.ensure_future(write_then_be_cancelled())
        assert len(checkouts) == 1  # the second write ran on the kept connection
        # Cancelled once its statement ended: the write has landed, nothing overtakes it.
        assert await backend.get("s", "k") == '"second"'
        await asyncio.sleep(0.05)
        assert backend.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await backend.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}
