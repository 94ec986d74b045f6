"""Where telemetry's time goes, per call: the OpenTelemetry SDK's own floor, and statekit's.

``benchmarks/telemetry.py`` prints these beside its Redis ratios, so a ratio can be read
against what it is made of: a span started and ended by the SDK (the bare loop a host
would write, and the call statekit makes, with its attributes), one histogram record, and
statekit's wrapper alone, run with stand-in providers that do nothing (what statekit adds
around the SDK calls: the attribute look-up, the clock reads, the notes of the call), and
all of it on a memory store with each SDK set-up of the benchmark.

Each figure is the best of a few repeats taken in turns: on a shared machine the best is
the cost, the rest is other processes' time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import SpanKind

from statekit import MemoryBackend, StateBackend, StateStore, Telemetry
from statekit.telemetry.instrument import wrap_operations
from statekit.telemetry.instruments import Instruments

REPEATS = 7
CALLS = 20_000
SCOPE_KEY = "conversation:v2:0123456789abcdef"


def _best_us(runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """The best of :data:`REPEATS` turns of each run (seconds per call), in µs."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(REPEATS):
        for name, run in runs.items():
            best[name] = min(best[name], run() * 1e6)
    return best


def _per_call(call: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        began = time.perf_counter()
        for _ in range(CALLS):
            call()
        return (time.perf_counter() - began) / CALLS

    return run


def sdk_costs(
    tracer_providers: dict[str, Any], attributes: dict[str, str | int]
) -> dict[str, float]:
    """µs per call: per tracer provider, ``with start_as_current_span`` (bare) and
    ``start_span(..., attributes).end()`` (statekit's call); one histogram record."""
    runs: dict[str, Callable[[], float]] = {}
    for label, provider in tracer_providers.items():
        tracer = provider.get_tracer("bench")

        def bare(tracer: Any = tracer) -> None:
            with tracer.start_as_current_span("x"):
                pass

        def statekit_span(tracer: Any = tracer) -> None:
            tracer.start_span("get", kind=SpanKind.CLIENT, attributes=attributes).end()

        runs[f"span, bare loop, {label}"] = _per_call(bare)
        runs[f"span, statekit's call, {label}"] = _per_call(statekit_span)
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    histogram = meter.create_histogram("bench.duration", unit="s")
    runs["histogram record"] = _per_call(lambda: histogram.record(0.0001, attributes))
    return _best_us(runs)


class _Span:
    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: object) -> None:
        pass

    def end(self) -> None:
        pass


class _Tracer:
    span = _Span()

    def start_span(self, name: str, **options: object) -> _Span:
        return self.span


class _Instrument:
    def record(self, amount: float, attributes: object = None) -> None:
        pass

    def add(self, amount: float, attributes: object = None) -> None:
        pass


class _Meter:
    def __getattr__(self, name: str) -> Callable[..., _Instrument]:
        return lambda *args, **kwargs: _Instrument()


def stand_in_store(backend: StateBackend) -> StateStore:
    """A store on ``backend`` wrapped by statekit's telemetry with providers that do
    nothing: statekit's own part of the cost, the SDK's left out."""
    store = StateStore(backend, telemetry=False)
    wrap_operations(store, Instruments(_Tracer(), _Meter(), backend, False))
    return store


async def _store_call_us(store: StateStore, op: str) -> float:
    call: Callable[[], Awaitable[object]]
    if op == "get":
        call = lambda: store.state_get(SCOPE_KEY, "k")  # noqa: E731
    else:
        call = lambda: store.state_set(SCOPE_KEY, "k", 1, "runner", "b-1", "conversation")  # noqa: E731
    began = time.perf_counter()
    for _ in range(CALLS):
        await call()
    return (time.perf_counter() - began) / CALLS * 1e6


async def wrapper_costs(variants: dict[str, Telemetry]) -> dict[str, float]:
    """µs telemetry adds to a memory ``get`` and ``set``: with providers that do nothing
    (statekit's wrapper alone, the SDK left out), and with each of ``variants`` (the
    whole of it, the SDK's calls included)."""
    stores = {
        "bare": StateStore(MemoryBackend(), telemetry=False),
        "statekit's wrapper": stand_in_store(MemoryBackend()),
        **{
            f"all of it, {name}": StateStore(MemoryBackend(), telemetry=t)
            for name, t in variants.items()
        },
    }
    found: dict[str, float] = {}
    for op in ("get", "set"):
        best = dict.fromkeys(stores, float("inf"))
        for _ in range(REPEATS):
            for name, store in stores.items():
                best[name] = min(best[name], await _store_call_us(store, op))
        for name in list(stores)[1:]:
            found[f"{name}, memory {op}"] = best[name] - best["bare"]
    return found


def all_costs(
    tracer_providers: dict[str, Any],
    variants: dict[str, Telemetry],
    attributes: dict[str, str | int],
) -> dict[str, float]:
    """Every figure above, in µs per call (to run outside an event loop)."""
    return {**sdk_costs(tracer_providers, attributes), **asyncio.run(wrapper_costs(variants))}
