"""The background sweeper: started in the loop of the store's first call, failures logged
and retried, stopped and awaited by ``aclose()``. The sweeps are observed through the
backend's calls (events, never timing)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from statekit import MemoryBackend, StateBackendError, StateStore, SweepResult
from statekit.testing import FakeClock
from statekit.testing.identities import new_identity, put

pytestmark = pytest.mark.memory
#: How long a test waits for a sweep it expects (a bound on a hang, not a timing check).
PATIENCE = 10.0


class Observed(MemoryBackend):
    """Memory whose sweeps are counted, the first ``failures`` of them failing."""

    def __init__(self, clock: FakeClock, failures: int = 0) -> None:
        super().__init__(clock=clock)
        self.sweeps = 0
        self.failures = failures
        self.swept = asyncio.Event()
        self.results: list[SweepResult] = []

    async def sweep_expired(self, batch_size: int = 1000) -> SweepResult:
        self.sweeps += 1
        self.swept.set()
        if self.sweeps <= self.failures:
            raise StateBackendError("sweep failed: server busy")
        result = await super().sweep_expired(batch_size)
        self.results.append(result)
        return result

    async def next_sweep(self) -> None:
        self.swept.clear()
        await asyncio.wait_for(self.swept.wait(), PATIENCE)


async def test_the_sweeper_reclaims_expired_scopes_in_the_background() -> None:
    clock = FakeClock()
    backend = Observed(clock)
    store = StateStore(backend, expiry={"conversation": 60}, sweep_interval=0.01)
    ident = new_identity()
    await put(store, ident, "a", 1)  # the first call starts the sweeper
    clock.advance(60)
    while SweepResult(1, 1) not in backend.results:
        await backend.next_sweep()
    await store.aclose()


async def test_a_failed_sweep_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    backend = Observed(FakeClock(), failures=2)
    store = StateStore(backend, sweep_interval=0.01)
    with caplog.at_level(logging.WARNING, logger="statekit"):
        await store.describe()
        while backend.sweeps < 3:
            await backend.next_sweep()
    await store.aclose()
    failures = [r.getMessage() for r in caplog.records if "expiry sweep failed" in r.getMessage()]
    assert len(failures) == 2
    assert "StateBackendError: sweep failed: server busy" in failures[0]


async def test_aclose_stops_the_sweeper_and_waits_for_it() -> None:
    backend = Observed(FakeClock())
    store = StateStore(backend, sweep_interval=0.01)
    await store.describe()
    await backend.next_sweep()
    sweeper = store._expiry.sweeper
    assert sweeper is not None
    assert sweeper.running
    await store.aclose()
    assert not sweeper.running
    count = backend.sweeps
    await asyncio.sleep(0.05)  # several intervals: none may sweep any more
    assert backend.sweeps == count


def test_a_store_built_outside_a_loop_starts_its_sweeper_in_the_first_loop() -> None:
    backend = Observed(FakeClock())
    store = StateStore(backend, sweep_interval=0.01)  # no running loop here

    async def use() -> None:
        async with store:
            await store.describe()
            await backend.next_sweep()

    asyncio.run(use())
    assert backend.sweeps >= 1


async def test_no_sweeper_without_an_interval() -> None:
    store = StateStore(MemoryBackend(), expiry={"conversation": 60})
    await store.describe()
    assert store._expiry.sweeper is None
    await store.aclose()
