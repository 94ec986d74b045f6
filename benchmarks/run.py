"""``python -m benchmarks.run``: statekit against raw clients and the original algorithm.

For each backend it prints a table (every statekit figure with its ratio to each
baseline) and writes every figure, the machine and all versions as JSON to
``benchmarks/results/<UTC time>-<host>.json`` (or ``--out``). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.contenders import BackendRun, open_postgres, open_redis, open_sqlite
from benchmarks.machine import machine_info
from benchmarks.matrix import BENCHMARKED, MATRIX, Target
from benchmarks.report import evaluate_targets, print_report, results_json
from benchmarks.suite import FULL, QUICK, BackendResult, Plan, run_backend
from statekit import BackendURL

BACKENDS = tuple(target.name for target in BENCHMARKED)
RESULTS_DIR = Path(__file__).parent / "results"
#: The openers of the benchmarked targets that live on a server, given its URL.
SERVER_OPENERS: dict[str, Callable[[str, bool], AbstractAsyncContextManager[BackendRun]]] = {
    "redis": open_redis,
    "postgres": open_postgres,
}


def _served() -> list[Target]:
    return [target for target in BENCHMARKED if target.env_var is not None]


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Where the servers are: ``--<target>-url`` per served target, ``--sqlite-dir``, and
    ``--no-peers`` (open statekit and its baselines only)."""
    for target in _served():
        parser.add_argument(
            f"--{target.name}-url",
            default=target.url_from_env(),
            help=f"default: ${target.env_var}, else {target.default_url}",
        )
    parser.add_argument("--sqlite-dir", help="where the SQLite file goes (default: a temp dir)")
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="leave out the peers (LangGraph's and py-key-value's stores, the bench extra)",
    )


def open_backend(name: str, args: argparse.Namespace) -> AbstractAsyncContextManager[BackendRun]:
    """The contenders of backend ``name`` on the servers named by ``args``."""
    peers = not args.no_peers
    if MATRIX[name].env_var is not None:
        return SERVER_OPENERS[name](getattr(args, _url_option(name)), peers)
    return open_sqlite(args.sqlite_dir, peers)


def _url_option(name: str) -> str:
    return f"{name.replace('-', '_')}_url"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help=f"comma-separated subset of {','.join(BACKENDS)} (default: all)",
    )
    parser.add_argument(
        "--runs", type=int, help=f"timed runs per figure, median kept ({FULL.runs})"
    )
    parser.add_argument(
        "--duration", type=float, help=f"seconds per timed run ({FULL.duration:g}; scaling: half)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and durations (smoke)")
    add_server_options(parser)
    parser.add_argument("--out", type=Path, help="JSON path (default: benchmarks/results/...)")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    if (args.runs is not None and args.runs < 1) or (
        args.duration is not None and args.duration <= 0
    ):
        parser.error("--runs must be at least 1 and --duration positive")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    """The full or quick plan, with ``--runs`` and ``--duration`` applied."""
    plan = QUICK if args.quick else FULL
    return dataclasses.replace(
        plan,
        runs=args.runs or plan.runs,
        duration=args.duration or plan.duration,
        scaling_duration=args.duration / 2 if args.duration else plan.scaling_duration,
    )


async def _run_all(args: argparse.Namespace, plan: Plan) -> list[BackendResult]:
    results = []
    for name in args.backends:
        print(f"{name}: measuring", file=sys.stderr, flush=True)
        async with open_backend(name, args) as run:
            results.append(await run_backend(run, plan))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    machine = machine_info()
    plan = plan_of(args)
    results = asyncio.run(_run_all(args, plan))
    targets = evaluate_targets(results)
    print_report(results, targets, sys.stdout)
    machine["load_average_after"] = list(os.getloadavg())
    settings = {
        "command": " ".join(
            ["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]
        ),
        "started_at": started.isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - clock, 1),
        "plan": dataclasses.asdict(plan),
        **{
            _url_option(t.name): str(BackendURL(getattr(args, _url_option(t.name))))
            for t in _served()
        },
    }
    out = args.out or RESULTS_DIR / f"{started:%Y%m%dT%H%M%SZ}-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = results_json(results, targets, machine, settings)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
