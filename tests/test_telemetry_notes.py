"""The coalescer's figures, on the recorder: ``Recorder.batch("coalesced", n)`` is one
batch-size measurement, and ``Recorder.note_coalesced`` puts ``statekit.coalesced.size``
on each caller's span.

The coalescer here is a stand-in on the memory backend: its callers queue their gets, and
one task of its own runs them as one batch, as a SQL coalescer does."""

from __future__ import annotations

import asyncio

import pytest
from telemetry_support import Observed

from statekit import MemoryBackend, StateBackendError, StateStore
from statekit.telemetry.instruments import Instruments
from statekit.telemetry.recorder import OperationNotes, Recorder

pytestmark = pytest.mark.memory
SCOPE_KEY = "actor:v2:0123456789abcdef"
CALLERS = 64


class Coalescing(MemoryBackend):
    """Gets queued until ``CALLERS`` wait, then run by one task and reported as one batch."""

    def __init__(self) -> None:
        super().__init__()
        self.recorder = Recorder()
        self.telemetry_attributes = {"db.system.name": "postgresql", "db.namespace": "test"}
        self._queue: list[tuple[OperationNotes | None, asyncio.Future[str | None]]] = []

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._queue.append((self.recorder.operation(), done))  # in the caller's task
        if len(self._queue) == CALLERS:
            batch, self._queue = self._queue, []
            asyncio.get_running_loop().create_task(self._run(batch))
        return await done

    async def _run(
        self, batch: list[tuple[OperationNotes | None, asyncio.Future[str | None]]]
    ) -> None:
        self.recorder.batch("coalesced", len(batch))
        for notes, done in batch:  # noted before the caller resumes and ends its span
            self.recorder.note_coalesced(len(batch), notes)
            done.set_result(None)


class NotingInItsTask(MemoryBackend):
    """A get that notes its batch from the caller's own task, after its result came."""

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        found = await super().get(scope_key, state_key, ttl)
        Recorder.note_coalesced(3)
        return found


def test_a_coalesced_batch_is_one_size_measurement_with_its_kind() -> None:
    observed = Observed()
    backend = Coalescing()
    assert Instruments.create(observed.telemetry, backend) is not None
    assert backend.recorder.active
    backend.recorder.batch("coalesced", 64)
    backend.recorder.batch("coalesced", 2)
    (point,) = observed.points("statekit.batch.size")
    assert dict(point.attributes) == {
        "db.system.name": "postgresql",
        "db.namespace": "test",
        "statekit.batch.kind": "coalesced",
    }
    assert (point.count, point.sum, point.max) == (2, 66, 64)


async def test_each_caller_of_a_coalesced_batch_has_its_span_and_the_batch_size() -> None:
    observed = Observed()
    store = StateStore(Coalescing(), telemetry=observed.telemetry)
    results = await asyncio.gather(*(store.state_get(SCOPE_KEY, f"k{i}") for i in range(CALLERS)))
    assert results == [None] * CALLERS
    gets = [span for span in observed.spans() if span.name == "get"]
    assert len(gets) == CALLERS
    assert {dict(span.attributes or {}).get("statekit.coalesced.size") for span in gets} == {
        CALLERS
    }
    (point,) = observed.points("statekit.batch.size")
    assert (point.count, point.sum) == (1, CALLERS)
    durations = observed.points("db.client.operation.duration")
    assert all("statekit.coalesced.size" not in point.attributes for point in durations)


async def test_a_caller_notes_its_batch_in_its_own_task() -> None:
    observed = Observed()
    store = StateStore(NotingInItsTask(), telemetry=observed.telemetry)
    await store.state_get(SCOPE_KEY, "k")
    await store.state_list(SCOPE_KEY)
    get, listed = observed.spans()
    assert dict(get.attributes or {})["statekit.coalesced.size"] == 3
    assert "statekit.coalesced.size" not in dict(listed.attributes or {})


async def test_a_note_outside_a_traced_operation_reaches_no_span() -> None:
    observed = Observed()
    store = StateStore(MemoryBackend(), telemetry=observed.telemetry)
    assert Recorder.operation() is None
    Recorder.note_coalesced(5)  # no traced operation under way: nothing to note
    await store.state_list(SCOPE_KEY)
    (listed,) = observed.spans()
    assert "statekit.coalesced.size" not in dict(listed.attributes or {})


class FailingInABatch(MemoryBackend):
    """A get whose coalesced batch failed: the caller's span still names the batch."""

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        Recorder.note_coalesced(4)
        raise StateBackendError("batch failed")


async def test_a_failed_coalesced_call_keeps_the_batch_size() -> None:
    observed = Observed()
    store = StateStore(FailingInABatch(), telemetry=observed.telemetry)
    with pytest.raises(StateBackendError):
        await store.state_get(SCOPE_KEY, "k")
    (span,) = observed.spans()
    assert dict(span.attributes or {})["statekit.coalesced.size"] == 4
    assert dict(span.attributes or {})["error.type"] == "StateBackendError"
