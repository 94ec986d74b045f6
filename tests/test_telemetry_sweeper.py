"""Background sweeps are traced like explicit ones: a ``sweep`` span per run and the sweep
counters, on a fake clock and a short interval (the waits bound a hang, they time nothing)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode
from telemetry_support import Observed

from statekit import MemoryBackend, StateBackendError, StateStore, SweepResult
from statekit.testing import FakeClock

pytestmark = pytest.mark.memory
SCOPE_KEY = "conversation:v2:0123456789abcdef"
#: How long a test waits for a sweep it expects (a bound on a hang, not a timing check).
PATIENCE = 10.0


class Failing(MemoryBackend):
    """Memory whose first sweep fails."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.sweeps = 0

    async def sweep_expired(self, batch_size: int = 1000) -> SweepResult:
        self.sweeps += 1
        if self.sweeps == 1:
            raise StateBackendError("sweep failed: server busy")
        return await super().sweep_expired(batch_size)


class Sweeps(SpanProcessor):
    """The ``sweep`` spans as they end (the counters are added before), one event each."""

    def __init__(self, observed: Observed) -> None:
        self.ended: list[ReadableSpan] = []
        self.event = asyncio.Event()
        observed.tracer_provider.add_span_processor(self)

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == "sweep":
            self.ended.append(span)
            self.event.set()

    async def next(self) -> ReadableSpan:
        self.event.clear()
        await asyncio.wait_for(self.event.wait(), PATIENCE)
        return self.ended[-1]


async def test_a_background_sweep_has_its_span_and_counts() -> None:
    clock, observed = FakeClock(), Observed()
    sweeps = Sweeps(observed)
    store = StateStore(
        MemoryBackend(clock=clock),
        expiry={"conversation": 60},
        sweep_interval=0.01,
        telemetry=observed.telemetry,
    )
    host = observed.tracer_provider.get_tracer("host")
    with host.start_as_current_span("request"):  # the first call starts the sweeper
        await store.state_set(SCOPE_KEY, "a", 1, "runner", "binding", "conversation")
        await store.state_set(SCOPE_KEY, "b", 2, "runner", "binding", "conversation")
    clock.advance(61)
    while observed.total("statekit.sweep.entries") < 2:
        await sweeps.next()
    await store.aclose()
    assert observed.total("statekit.sweep.entries") == 2
    assert observed.total("statekit.sweep.scopes") == 1
    for span in sweeps.ended:
        assert span.parent is None  # the loop's, not the request's that started it
        assert dict(span.attributes or {})["db.operation.name"] == "sweep"
    durations = {
        p.attributes["db.operation.name"] for p in observed.points("db.client.operation.duration")
    }
    assert "sweep" in durations


async def test_a_failed_background_sweep_sets_error_type() -> None:
    observed = Observed()
    backend = Failing(FakeClock())
    sweeps = Sweeps(observed)
    store = StateStore(backend, sweep_interval=0.01, telemetry=observed.telemetry)
    await store.describe()
    failed = await sweeps.next()
    await sweeps.next()  # retried at the next interval, traced again
    await store.aclose()
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "StateBackendError"


def test_a_store_without_telemetry_sweeps_the_backend_itself() -> None:
    backend = MemoryBackend()
    store = StateStore(backend, sweep_interval=60, telemetry=False)
    sweeper = store._expiry.sweeper
    assert sweeper is not None
    assert sweeper.sweep == backend.sweep_expired
