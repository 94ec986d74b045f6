"""``python -m benchmarks.cpu_split``: where a PostgreSQL call's CPU goes, client and server.

Throughput at 64 in flight on a machine of few cores is set by CPU: the client's (this
process: the library's Python, the driver, the event loop) and the server's (parsing,
planning, index maintenance), which share the machine's cores. This benchmark opens the
same contenders as ``python -m benchmarks.run --backends postgres`` (statekit, raw
asyncpg, the original algorithm, LangGraph's and py-key-value's stores), fills them
alike, and times one operation at ``--in-flight`` calls, the contenders taking turns over
``--runs`` rounds. For each it reports ops/s and, per operation, the CPU time of this
process and of the PostgreSQL server's processes (user + system time from ``/proc``).

The server's figure needs the server on this machine (its processes visible in
``/proc``, Linux) and counts every session of that server: run it on a quiet server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Op, measure, warm_up
from benchmarks.run import add_server_options, open_backend
from benchmarks.suite import OPS, operation, prepare
from benchmarks.workload import new_runner_id, unavailable_reason

_TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu_seconds() -> float:
    """User + system CPU seconds of every process named ``postgres`` now alive."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


@dataclass(frozen=True)
class Split:
    ops_per_s: float
    client_us: float  # CPU of this process per operation
    server_us: float  # CPU of the server's processes per operation


async def timed(op: Op, in_flight: int, duration: float) -> Split:
    """One timed run of ``op`` with the CPU both sides spent on it."""
    client, server = time.process_time(), server_cpu_seconds()
    sample = await measure(op, in_flight, duration)
    client, server = time.process_time() - client, server_cpu_seconds() - server
    return Split(sample.ops / sample.seconds, 1e6 * client / sample.ops, 1e6 * server / sample.ops)


async def main(args: argparse.Namespace) -> None:
    async with open_backend("postgres", args) as run:
        work = await prepare(run, new_runner_id(), 1000)
        contenders = [c for c in run.everyone if unavailable_reason(c, args.op) is None]
        splits: dict[str, list[Split]] = {c.label: [] for c in contenders}
        for round_ in range(args.runs):
            for contender in contenders if round_ % 2 == 0 else contenders[::-1]:
                op = operation(contender, args.op, work)
                await warm_up(op, args.in_flight)
                splits[contender.label].append(await timed(op, args.in_flight, args.duration))
    print(f"{args.op} on PostgreSQL, {args.in_flight} in flight, medians of {args.runs} runs")
    print(f"{'contender':36} {'ops/s':>9} {'client us/op':>13} {'server us/op':>13}")
    for label, found in splits.items():
        ops, client, server = (
            statistics.median(getattr(s, name) for s in found)
            for name in ("ops_per_s", "client_us", "server_us")
        )
        print(f"{label:36} {ops:9,.0f} {client:13.1f} {server:13.1f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_split", description=__doc__)
    parser.add_argument("--op", choices=OPS, default="set")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per timed run")
    add_server_options(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
