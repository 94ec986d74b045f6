"""What is measured for one backend: the main comparison and the scaling runs.

Main comparison, for each of ``set`` (``apply_update_from_event``), ``get`` (``state_get``),
``snapshot`` (``build_snapshot_from_event``, 4 scopes x 10 keys) and ``list`` (``state_list``
with a prefix matching 50 of 1,000 keys), at 1 and 64 calls in flight. Scaling: snapshot and
list time as one scope grows from 10 to 10,000 keys, and set throughput from 1 to 256 calls
in flight. Every contender does the same work on the same data, measured side by side.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.contenders import BackendRun
from benchmarks.harness import Figure, Op, compare
from benchmarks.workload import (
    LIST_PREFIX,
    RW_KEYS,
    SNAPSHOT_KEYS,
    VALUE,
    Contender,
    Identity,
    family_of,
    list_entries,
    make_identity,
    new_runner_id,
    rw_key,
    unavailable_reason,
)

OPS = ("set", "get", "snapshot", "list")
#: The scope set and get work in, and the one listings and scaled snapshots fill.
RW_SCOPE = "actor"
LIST_SCOPE = "conversation"


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of a run; :data:`FULL` by default, :data:`QUICK` for a smoke run."""

    runs: int
    duration: float  # seconds per timed run in the main comparison
    scaling_duration: float  # seconds per timed run in the scaling runs
    in_flight: tuple[int, ...]
    list_scope_size: int
    scope_sizes: tuple[int, ...]
    concurrency: tuple[int, ...]


FULL = Plan(
    runs=3,
    duration=1.0,
    scaling_duration=0.5,
    in_flight=(1, 64),
    list_scope_size=1000,
    scope_sizes=(10, 100, 1000, 10_000),
    concurrency=(1, 4, 16, 64, 256),
)
QUICK = Plan(
    runs=1,
    duration=0.02,
    scaling_duration=0.02,
    in_flight=(1, 8),
    list_scope_size=100,
    scope_sizes=(10, 100),
    concurrency=(1, 4),
)


@dataclass(frozen=True)
class Comparison:
    """One operation under one condition, every contender's figure, statekit's ratios.

    ``baselines`` are the baselines measured; ``unavailable`` those whose API cannot do
    the operation (label -> why), recorded rather than left out; ``families`` gives each
    baseline's ``(family, tag)``, measured or not.
    """

    op: str
    in_flight: int
    scope_size: int | None
    figures: dict[str, Figure]
    statekit: tuple[str, ...]
    baselines: tuple[str, ...]
    unavailable: Mapping[str, str] = field(default_factory=dict)
    families: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def ratio(self, subject: str, baseline: str) -> dict[str, float]:
        """Throughput as subject / baseline (above 1: statekit is faster); latencies as
        subject / baseline too (below 1: statekit is faster)."""
        mine, theirs = self.figures[subject], self.figures[baseline]
        return {
            "ops_per_s": mine.ops_per_s / theirs.ops_per_s,
            "p50_ms": mine.p50_ms / theirs.p50_ms,
            "p99_ms": mine.p99_ms / theirs.p99_ms,
        }


@dataclass(frozen=True)
class BackendResult:
    name: str
    server: str
    where: str
    main: list[Comparison]
    scaling: list[Comparison]


@dataclass(frozen=True)
class Workload:
    """The identities the main comparison works on, filled in every contender's storage."""

    rw: Identity  # set and get: RW_KEYS keys in the actor scope
    snapshot: Identity  # SNAPSHOT_KEYS keys in each of the four scopes
    listing: Identity  # a conversation scope of ``list_scope_size`` keys


def operation(contender: Contender, op: str, work: Workload) -> Op:
    """``contender``'s timed call for ``op``; the index picks the key for set and get."""
    if op == "set":
        return lambda i: contender.set(work.rw, RW_SCOPE, rw_key(i), VALUE)
    if op == "get":
        return lambda i: contender.get(work.rw, RW_SCOPE, rw_key(i))
    if op == "snapshot":
        return lambda i: contender.snapshot(work.snapshot)
    if op == "list":
        return lambda i: contender.list(work.listing, LIST_SCOPE, LIST_PREFIX)
    raise ValueError(f"unknown operation {op!r}")


async def _fill(
    run: BackendRun, who: Identity, scope: str, entries: dict[str, Any], *ops: str
) -> None:
    """Write ``entries`` into every contender that can do one of ``ops`` on them."""
    for contender in run.everyone:
        if any(unavailable_reason(contender, op) is None for op in ops):
            await contender.fill(who, scope, entries)


async def _check(contender: Contender, work: Workload) -> None:
    """Fail loudly if a contender would time empty reads: each must see the data (in the
    operations it can do)."""
    if await contender.get(work.rw, RW_SCOPE, rw_key(0)) != VALUE:
        raise AssertionError(f"{contender.label}: get does not return the stored value")
    if unavailable_reason(contender, "snapshot") is None:
        snapshot = await contender.snapshot(work.snapshot)
        if any(len(snapshot[scope]) < SNAPSHOT_KEYS for scope in work.snapshot.scope_keys):
            raise AssertionError(f"{contender.label}: snapshot misses keys")
    if unavailable_reason(contender, "list") is None:
        keys, _ = await contender.list(work.listing, LIST_SCOPE, LIST_PREFIX)
        if not keys or not all(key.startswith(LIST_PREFIX) for key in keys):
            raise AssertionError(f"{contender.label}: listing is wrong: {keys[:3]}")


async def prepare(run: BackendRun, runner_id: str, list_scope_size: int) -> Workload:
    """Fill every contender's storage with the same data and check each one reads it."""
    work = Workload(
        rw=make_identity(runner_id, "rw"),
        snapshot=make_identity(runner_id, "snapshot"),
        listing=make_identity(runner_id, "list"),
    )
    await _fill(run, work.rw, RW_SCOPE, {rw_key(i): VALUE for i in range(RW_KEYS)}, "set", "get")
    for scope in work.snapshot.scope_keys:
        entries = {f"{scope}.{j}": VALUE for j in range(SNAPSHOT_KEYS)}
        await _fill(run, work.snapshot, scope, entries, "snapshot")
    await _fill(run, work.listing, LIST_SCOPE, list_entries(list_scope_size), "list")
    for contender in run.everyone:
        await _check(contender, work)
    return work


def _contenders(run: BackendRun, op: str) -> list[Contender]:
    """statekit first, then its set-and-get-only variants where they apply, then baselines."""
    point_only = run.point_only if op in ("set", "get") else []
    return [*run.statekit, *point_only, *run.baselines]


async def _compare(
    run: BackendRun,
    op: str,
    work: Workload,
    *,
    in_flight: int,
    duration: float,
    runs: int,
    scope_size: int | None = None,
) -> Comparison:
    everyone = _contenders(run, op)
    unavailable = {
        c.label: reason for c in everyone if (reason := unavailable_reason(c, op)) is not None
    }
    contenders = [c for c in everyone if c.label not in unavailable]
    ops = {c.label: operation(c, op, work) for c in contenders}
    figures = await compare(ops, in_flight, duration, runs)
    comparison = Comparison(
        op=op,
        in_flight=in_flight,
        scope_size=scope_size,
        figures=figures,
        statekit=tuple(c.label for c in contenders if c not in run.baselines),
        baselines=tuple(c.label for c in run.baselines if c.label not in unavailable),
        unavailable=unavailable,
        families={c.label: family_of(c) for c in run.baselines},
    )
    summary = ", ".join(f"{name} {fig.ops_per_s:,.0f}/s" for name, fig in figures.items())
    summary += "".join(f", {name} n/a" for name in unavailable)
    size = f" scope={scope_size}" if scope_size is not None else ""
    print(f"  {run.name} {op} x{in_flight}{size}: {summary}", file=sys.stderr, flush=True)
    return comparison


async def run_backend(run: BackendRun, plan: Plan) -> BackendResult:
    """The main comparison, then the scaling runs, on freshly filled data."""
    runner_id = new_runner_id()
    work = await prepare(run, runner_id, plan.list_scope_size)
    main = [
        await _compare(run, op, work, in_flight=n, duration=plan.duration, runs=plan.runs)
        for op in OPS
        for n in plan.in_flight
    ]
    scaling = []
    for size in plan.scope_sizes:
        scaled = make_identity(runner_id, f"scale-{size}")
        await _fill(run, scaled, LIST_SCOPE, list_entries(size), "snapshot", "list")
        grown = Workload(rw=work.rw, snapshot=scaled, listing=scaled)
        for op in ("snapshot", "list"):
            scaling.append(
                await _compare(
                    run,
                    op,
                    grown,
                    in_flight=1,
                    duration=plan.scaling_duration,
                    runs=plan.runs,
                    scope_size=size,
                )
            )
    for n in plan.concurrency:
        scaling.append(
            await _compare(
                run, "set", work, in_flight=n, duration=plan.scaling_duration, runs=plan.runs
            )
        )
    return BackendResult(run.name, run.server, run.where, main, scaling)
