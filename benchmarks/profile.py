"""``python -m benchmarks.profile --backend redis --op set``: one operation under pyinstrument.

Sets up the same data as ``benchmarks.run``, runs one contender's operation (default:
statekit's) for ``--duration`` seconds at ``--in-flight`` calls, and prints pyinstrument's
call tree, then the profile's self time grouped by owner: statekit, each library, the
event loop, socket system calls, and idle time waiting for the server (``epoll``). The
event loop's own frames are kept so that waiting shows next to the Python work.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.frame import Frame

import statekit
from benchmarks.harness import measure, warm_up
from benchmarks.run import BACKENDS, add_server_options, open_backend
from benchmarks.suite import OPS, operation, prepare
from benchmarks.workload import new_runner_id, unavailable_reason

STATEKIT_DIR = str(Path(statekit.__file__).parent)
BENCHMARKS_DIR = str(Path(__file__).parent)
IDLE = "waiting for the server (epoll)"


def _group(frame: Frame, caller: str) -> str:
    """Who a frame's own time belongs to: statekit, a library, the event loop, or idle.

    Built-in calls count for their caller, except the two that are the machine's, not the
    code's: waiting in ``epoll`` and socket system calls.
    """
    path = frame.file_path or ""
    if path == "<built-in>":
        if frame.function.endswith(".poll"):
            return IDLE
        return "socket syscalls" if frame.function.startswith("socket.") else caller
    if path.startswith(STATEKIT_DIR):
        return "statekit"
    if path.startswith(BENCHMARKS_DIR):
        return "benchmark harness"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for module in ("asyncio", "json", "dataclasses", "copy"):
        if f"/{module}/" in path or path.endswith(f"/{module}.py"):
            return module
    return "python (other)"


def time_by_owner(root: Frame) -> dict[str, float]:
    """Seconds of self time per :func:`_group`, over the whole profile, largest first."""
    totals: defaultdict[str, float] = defaultdict(float)
    stack = [(root, "python (other)")]
    while stack:
        frame, caller = stack.pop()
        group = _group(frame, caller)
        totals[group] += frame.total_self_time
        stack.extend((child, group) for child in frame.children if not child.is_synthetic)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--backend", choices=BACKENDS, required=True)
    parser.add_argument("--op", choices=OPS, required=True)
    parser.add_argument("--contender", default="statekit", help="label (default: statekit)")
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds profiled")
    parser.add_argument("--interval", type=float, default=0.001, help="sampling interval, s")
    parser.add_argument("--all", action="store_true", help="show library frames too")
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    add_server_options(parser)
    return parser.parse_args(argv)


async def _profile(args: argparse.Namespace) -> Profiler:
    async with open_backend(args.backend, args) as run:
        contenders = {c.label: c for c in run.everyone}
        if args.contender not in contenders:
            raise SystemExit(f"no contender {args.contender!r}; one of {sorted(contenders)}")
        reason = unavailable_reason(contenders[args.contender], args.op)
        if reason is not None:
            raise SystemExit(f"{args.contender} cannot {args.op}: {reason}")
        work = await prepare(run, new_runner_id(), list_scope_size=1000)
        op = operation(contenders[args.contender], args.op, work)
        await warm_up(op, args.in_flight)
        profiler = Profiler(interval=args.interval, async_mode="disabled")
        with profiler:
            sample = await measure(op, args.in_flight, args.duration)
        print(
            f"{args.contender} {args.op} on {run.server}, {args.in_flight} in flight: "
            f"{sample.ops_per_s:,.0f} ops/s under the profiler, p50 {sample.p50_ms:.3f} ms",
            file=sys.stderr,
        )
        return profiler


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profiler = asyncio.run(_profile(args))
    print(profiler.output_text(unicode=True, color=False, show_all=args.all))
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is not None:
        totals = time_by_owner(root)
        print("self time by owner (whole profile):")
        for owner, seconds in totals.items():
            print(f"  {owner:34} {seconds:7.3f} s  {100 * seconds / root.time:5.1f} %")
    if args.html:
        with open(args.html, "w") as html:
            html.write(profiler.output_html())
    return 0


if __name__ == "__main__":
    sys.exit(main())
