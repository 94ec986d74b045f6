"""Versioned increments from many processes at once lose no update, on every shared backend.

Each of ``PROCESSES`` worker processes (``attack_workers.py increment``) opens its own
store and, released together with the others, makes ``INCREMENTS`` read-modify-write
increments of one shared counter with ``state_get_versioned`` and
``state_set(..., expected_version=...)``, retrying on a version conflict. The counter must
end at exactly ``PROCESSES * INCREMENTS``: a conditional set that let two processes write
over the same version would lose an increment, and a refused or failed call fails its
worker. Every worker has a deadline, and the test kills them all if one passes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from services import service_url
from sqlsupport import postgres_url, private_schema
from worker_processes import Worker, deadline, open_job, release, results, spawn, stop

import statekit
from statekit.testing.identities import new_identity

# One group of worker processes serves every test of the module (an interpreter costs
# more to start than a job), so the tests share the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

PROCESSES = 8
INCREMENTS = 50
#: Seconds for the interpreters to start (the first job) and for a job to end.
# Generous: starting 8 interpreters on a loaded 2-core machine can take tens of seconds.
READY_BOUND = 120.0
JOB_BOUND = 60.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def workers() -> AsyncIterator[list[Worker]]:
    group = await spawn("increment", PROCESSES)
    yield group
    await stop(group)


async def _assert_no_increment_lost(
    workers: list[Worker], url: str, options: dict[str, Any], report: Callable[[str], None]
) -> None:
    """Run the workers on one new counter, which must then hold every increment."""
    if any(worker.process.returncode is not None for worker in workers):
        pytest.fail(f"a worker has exited: {[w.lines[-3:] for w in workers]}")
    tag = uuid.uuid4().hex[:12]
    config = {
        "url": url,
        "options": options,
        "tag": tag,
        "key": "counter",
        "count": INCREMENTS,
        "deadline": deadline(READY_BOUND + JOB_BOUND),
    }
    await open_job(workers, [config] * PROCESSES, READY_BOUND)
    release(workers)
    done = await results(workers, JOB_BOUND)
    assert all(line.startswith("done ") for line in done), done
    conflicts = sum(int(line.split()[1]) for line in done)
    # The processes really contended: some of their sets were refused as stale.
    assert conflicts > 0, done
    ident = new_identity(tag=tag)
    async with statekit.connect(url, **options) as store:
        value, version = await store.state_get_versioned(ident.scope_key(), "counter")
        await store.state_delete(ident.scope_key(), "counter")
    where = url.split(":", 1)[0]
    if "auto_pipeline" in options:
        where += " (auto_pipeline)" if options["auto_pipeline"] else " (direct)"
    report(
        f"increments on {where}: {value}/{PROCESSES * INCREMENTS} from {PROCESSES} processes, "
        f"{conflicts} conflicts retried"
    )
    assert value == PROCESSES * INCREMENTS
    assert version > 0


@pytest.mark.slow
@pytest.mark.sqlite
async def test_increments_from_processes_on_a_sqlite_file_lose_nothing(
    workers: list[Worker], tmp_path: Path, summary_line: Callable[[str], None]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'counter.db'}"
    await _assert_no_increment_lost(workers, url, {}, summary_line)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("auto_pipeline", [True, False], ids=["auto_pipeline", "direct"])
async def test_increments_from_processes_on_redis_lose_nothing(
    workers: list[Worker], auto_pipeline: bool, summary_line: Callable[[str], None]
) -> None:
    url = service_url("STATEKIT_REDIS_URL")
    options: dict[str, Any] = {
        "key_prefix": f"statekit-test:{uuid.uuid4().hex}:",
        "auto_pipeline": auto_pipeline,
    }
    try:
        await _assert_no_increment_lost(workers, url, options, summary_line)
    finally:
        async with statekit.connect(url, **options) as store:
            await store.clear_all()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    yield from private_schema()


@pytest.mark.slow
@pytest.mark.postgres
async def test_increments_from_processes_on_postgres_lose_nothing(
    workers: list[Worker], pg_schema: str, summary_line: Callable[[str], None]
) -> None:
    # The schema and table do not exist yet: the workers' first writes race to create them.
    options = {"schema": pg_schema}
    await _assert_no_increment_lost(workers, postgres_url(), options, summary_line)
