"""Timing: throughput and latency percentiles of an async operation at a given concurrency.

An operation is ``op(i)`` for an index ``i`` that picks its key. :func:`measure` keeps
``in_flight`` calls running until ``duration`` has passed, recording each call's latency;
:func:`compare` measures several contenders the same way, alternating them run after run so
that noise from the (shared, 2-core) machine hits all of them alike, and keeps the median of
each figure over the runs.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

Op = Callable[[int], Awaitable[object]]


@dataclass(frozen=True)
class Sample:
    """One timed run: throughput and latency percentiles."""

    ops: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds


@dataclass(frozen=True)
class Figure:
    """The median of each figure over several runs, with the runs themselves."""

    ops_per_s: float
    p50_ms: float
    p99_ms: float
    runs: tuple[Sample, ...]

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Figure:
        return cls(
            ops_per_s=statistics.median(s.ops_per_s for s in samples),
            p50_ms=statistics.median(s.p50_ms for s in samples),
            p99_ms=statistics.median(s.p99_ms for s in samples),
            runs=tuple(samples),
        )


def against(found: dict[str, Figure], base: str) -> dict[str, dict[str, float]]:
    """Each contender's ops/s, p99 and ratio to ``base``'s ops/s, rounded for a report."""
    base_ops = found[base].ops_per_s
    return {
        name: {
            "ops_per_s": round(f.ops_per_s),
            "p99_ms": round(f.p99_ms, 2),
            "ratio": round(f.ops_per_s / base_ops, 3),
        }
        for name, f in found.items()
    }


def percentiles(latencies: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) of ``latencies``; with one value, that value for both."""
    if len(latencies) < 2:
        return latencies[0], latencies[0]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def measure(op: Op, in_flight: int, duration: float) -> Sample:
    """Run ``op`` with ``in_flight`` calls outstanding for about ``duration`` seconds.

    Every worker starts a new call as soon as its previous one returns, until the
    deadline; the calls still running then are waited for and counted. Each worker makes
    at least one call, so a loaded machine that starts the workers late (a short
    ``--quick`` run) still measures something.
    """
    indexes = itertools.count()
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker() -> None:
        while True:
            started = clock()
            await op(next(indexes))
            latencies.append(clock() - started)
            if clock() >= deadline:
                return

    start = clock()
    deadline = start + duration
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    seconds = clock() - start
    p50, p99 = percentiles(latencies)
    return Sample(len(latencies), seconds, p50 * 1000, p99 * 1000)


async def warm_up(op: Op, in_flight: int) -> None:
    """Open connections, load scripts and prepare statements before timing."""
    for _ in range(2):
        await asyncio.gather(*(op(i) for i in range(in_flight)))


async def compare(
    ops: dict[str, Op], in_flight: int, duration: float, runs: int
) -> dict[str, Figure]:
    """Each contender's :class:`Figure`, from ``runs`` alternating runs of every contender.

    Odd runs go through the contenders in reverse, so none always runs first or last.
    """
    samples: dict[str, list[Sample]] = {name: [] for name in ops}
    for run in range(runs):
        names = list(ops) if run % 2 == 0 else list(reversed(ops))
        for name in names:
            await warm_up(ops[name], in_flight)
            samples[name].append(await measure(ops[name], in_flight, duration))
    return {name: Figure.of(runs_of) for name, runs_of in samples.items()}
