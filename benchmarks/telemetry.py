"""What telemetry costs on the hot path: Redis set and get at 64 in flight, three stores.

    python benchmarks/telemetry.py [--url redis://127.0.0.1:6379/3] [--runs 3]

========  ===================================================================
variant   store
========  ===================================================================
default   ``telemetry`` left on, but no SDK configured: what a process without
          the ``otel`` extra runs (the methods are not wrapped either way)
off       ``telemetry=False``
on        the OpenTelemetry SDK: a ``TracerProvider`` with a
          ``BatchSpanProcessor`` whose exporter drops every span, and a
          ``MeterProvider`` aggregating into an in-memory reader
========  ===================================================================

The variants take turns in chunks of 1024 calls (``redis_concurrency.alternate``), so a
shared machine's load hits them alike; each run's ratios compare the variants' rates in
that run, and the medians over ``--runs`` runs are printed.
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

from benchmarks.redis_concurrency import Op, _store_ops, alternate
from statekit import StateStore, Telemetry
from statekit.backends.redis import RedisBackend
from statekit.testing import new_identity

IN_FLIGHT = 64
TOTAL = 8192


class _Dropping(SpanExporter):
    """An exporter that sends nowhere: the SDK's own cost, no network's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _sdk() -> Telemetry:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Dropping()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Telemetry(tracer_provider, meter_provider)


async def main(url: str, runs: int) -> None:
    prefix = f"statekit-bench:{uuid.uuid4().hex}:"
    choices: dict[str, bool | Telemetry] = {"default": True, "off": False, "on": _sdk()}
    stores = {
        name: StateStore(
            RedisBackend.from_url(url, key_prefix=prefix, pool_size=64), telemetry=telemetry
        )
        for name, telemetry in choices.items()
    }
    identities = [new_identity() for _ in range(64)]
    ops = {name: _store_ops(store, identities, identities[0]) for name, store in stores.items()}
    ratios: dict[tuple[str, str], list[float]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
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
    print(f"{'variant':8} {'op':4} {'in flight':>9} {'ops/s':>9} {'x default':>9}")
    for (name, kind), values in rates.items():
        ratio = statistics.median(ratios[(name, kind)])
        print(f"{name:8} {kind:4} {IN_FLIGHT:>9} {statistics.median(values):>9.0f} {ratio:>9.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.runs))
