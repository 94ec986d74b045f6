"""What telemetry costs on the hot path: Redis set and get at 64 in flight, six stores.

    python benchmarks/telemetry.py [--url redis://127.0.0.1:6379/3] [--runs 3]

=========  ==================================================================
variant    store
=========  ==================================================================
default    ``telemetry`` left on, but no SDK configured: what a process without
           the ``otel`` extra runs (the methods are not wrapped either way)
off        ``telemetry=False``
stand-in   statekit's wrapper with stand-in providers that do nothing: what
           statekit itself adds, the SDK's calls left out
always     the OpenTelemetry SDK, every span kept: a ``TracerProvider`` (its
           default sampler, always on) with a ``BatchSpanProcessor`` whose
           exporter drops every span, and a ``MeterProvider`` aggregating into
           an in-memory reader
sampled    the same with ``sampler=ParentBased(TraceIdRatioBased(0.01))``: one
           trace in a hundred kept, what a high-throughput host configures
metrics    the ``MeterProvider`` only, no ``TracerProvider``
=========  ==================================================================

The variants take turns in chunks of 1024 calls (``redis_concurrency.alternate``), so a
shared machine's load hits them alike; each run's ratios compare the variants' rates in
that run, and the medians over ``--runs`` runs are printed, with the µs per call they
come to. Then the floor: what the SDK's own calls cost here (``telemetry_costs``), and
what statekit's wrapper adds around them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import uuid
from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from benchmarks.redis_concurrency import Op, _store_ops, alternate
from benchmarks.telemetry_costs import CALLS, all_costs, stand_in_store
from statekit import StateStore, Telemetry
from statekit.backends.redis import RedisBackend
from statekit.testing import new_identity

IN_FLIGHT = 64
TOTAL = 8192
#: The attributes of a Redis ``get`` span, for the floor's SDK calls.
GET_ATTRIBUTES: dict[str, str | int] = {
    "db.system.name": "redis",
    "db.namespace": "3",
    "server.address": "127.0.0.1",
    "server.port": 6379,
    "db.operation.name": "get",
    "statekit.scope": "conversation",
}


class _Dropping(SpanExporter):
    """An exporter that sends nowhere: the SDK's own cost, no network's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _tracer_provider(sampler: Sampler | None = None, queue: int = 2048) -> TracerProvider:
    """The SDK's provider, its span processor's queue as long as ``queue`` (the default's
    2048 for the stores; the floor's tight loops need room for all their spans, since a
    span the full queue drops would cost less than one exported)."""
    provider = TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(_Dropping(), max_queue_size=queue))
    return provider


def _meter_provider() -> MeterProvider:
    return MeterProvider(metric_readers=[InMemoryMetricReader()])


def _one_in_a_hundred() -> Sampler:
    return ParentBased(TraceIdRatioBased(0.01))


def _variants(queue: int = 2048) -> dict[str, bool | Telemetry]:
    return {
        "default": True,
        "off": False,
        "always": Telemetry(_tracer_provider(queue=queue), _meter_provider()),
        "sampled": Telemetry(_tracer_provider(_one_in_a_hundred(), queue), _meter_provider()),
        "metrics": Telemetry(meter_provider=_meter_provider()),
    }


async def _measure(url: str, runs: int) -> dict[tuple[str, str], tuple[float, float]]:
    """(variant, op) -> (median ops/s, median ratio to ``default``)."""
    prefix = f"statekit-bench:{uuid.uuid4().hex}:"

    def backend() -> RedisBackend:
        return RedisBackend.from_url(url, key_prefix=prefix, pool_size=64)

    stores: dict[str, StateStore] = {}
    for name, telemetry in _variants().items():
        stores[name] = StateStore(backend(), telemetry=telemetry)
        if name == "off":
            stores["stand-in"] = stand_in_store(backend())
    identities = [new_identity() for _ in range(64)]
    ops = {name: _store_ops(store, identities, identities[0]) for name, store in stores.items()}
    rates: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    try:
        for kind in ("set", "get"):
            for _ in range(runs):
                variants: dict[str, Op] = {name: v[kind] for name, v in ops.items()}
                run = await alternate(variants, IN_FLIGHT, TOTAL)
                print(
                    f"  {kind}: " + ", ".join(f"{n} {r:.0f}/s" for n, r in run.items()),
                    file=sys.stderr,
                )
                for name, rate in run.items():
                    rates.setdefault((name, kind), []).append(rate)
                    ratios.setdefault((name, kind), []).append(rate / run["default"])
    finally:
        await stores["off"].clear_all()
        for store in stores.values():
            await store.aclose()
    return {
        key: (statistics.median(values), statistics.median(ratios[key]))
        for key, values in rates.items()
    }


def main(url: str, runs: int) -> None:
    measured = asyncio.run(_measure(url, runs))
    print(f"{'variant':8} {'op':4} {'in flight':>9} {'ops/s':>9} {'x default':>9} {'us/op':>7}")
    for (name, kind), (rate, ratio) in measured.items():
        print(f"{name:8} {kind:4} {IN_FLIGHT:>9} {rate:>9.0f} {ratio:>9.3f} {1e6 / rate:>7.1f}")
    room = 2 * CALLS
    providers = {
        "always": _tracer_provider(queue=room),
        "sampled": _tracer_provider(_one_in_a_hundred(), queue=room),
    }
    variants = {
        name: telemetry
        for name, telemetry in _variants(room).items()
        if isinstance(telemetry, Telemetry)
    }
    print("\nper call, best of repeats (us):")
    for name, us in all_costs(providers, variants, GET_ATTRIBUTES).items():
        print(f"  {name:40} {us:6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    main(args.url, args.runs)
