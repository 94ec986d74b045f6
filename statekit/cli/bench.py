"""``statekit bench``: a quick measure of the configured backend through the store.

It writes under a runner id of its own (``statekit-bench-<uuid>``) and deletes every
key it wrote, even when interrupted by an error.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from statekit.cli.options import JsonOption, UrlOption, rich_console
from statekit.cli.runtime import emit_json, run
from statekit.connection import connect
from statekit.models import ActorContext, AgentBinding, AgentEventEnvelope, RunnerDescriptor
from statekit.scope import build_state_scope_key
from statekit.store import StateStore

VALUE = {"lang": "fr", "turns": 12, "tags": ["a", "b", "c"], "note": "x" * 64}


async def _timed(ops: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Operations per second for ``ops`` calls of ``op(i)`` by ``concurrency`` workers."""
    counter = iter(range(ops))

    async def worker() -> None:
        for i in counter:  # shared iterator: each index is taken once
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, ops))))
    elapsed = time.perf_counter() - started
    return ops / elapsed if elapsed > 0 else float("inf")


async def bench_store(store: StateStore, ops: int, concurrency: int) -> dict[str, Any]:
    runner = RunnerDescriptor(id=f"statekit-bench-{uuid.uuid4().hex}")
    binding = AgentBinding(binding_id="statekit-bench")
    event = AgentEventEnvelope(
        bot_id="bench", conversation_id="bench", actor=ActorContext(actor_id="bench")
    )
    scope_key = build_state_scope_key("conversation", event, binding, runner)
    assert scope_key is not None  # the event carries a conversation id
    written: set[int] = set()

    async def set_one(i: int) -> None:
        ok, error = await store.state_set(
            scope_key,
            f"bench.{i}",
            VALUE,
            runner.id,
            "statekit-bench",
            "conversation",
            {"bot_id": "bench", "conversation_id": "bench"},
        )
        if not ok:
            raise RuntimeError(f"bench write refused: {error}")
        written.add(i)

    async def get_one(i: int) -> None:
        await store.state_get(scope_key, f"bench.{i}")

    async def snapshot_one(_: int) -> None:
        await store.build_snapshot_from_event(event, binding, runner)

    # Snapshots read the whole scope: keep it small so they measure round trips.
    snapshot_keys = min(ops, 20)
    results: dict[str, Any] = {"ops": ops, "concurrency": concurrency, "runner_id": runner.id}
    try:
        # Warm up: open the pool's connections (and load any scripts) outside the timings.
        await _timed(concurrency, concurrency, set_one)
        results["set_ops_per_s"] = await _timed(ops, concurrency, set_one)
        results["get_ops_per_s"] = await _timed(ops, concurrency, get_one)
        for i in range(snapshot_keys, ops):
            await store.state_delete(scope_key, f"bench.{i}")
            written.discard(i)
        results["snapshot_ops_per_s"] = await _timed(ops, concurrency, snapshot_one)
        results["snapshot_keys"] = snapshot_keys
    finally:
        for i in sorted(written):
            await store.state_delete(scope_key, f"bench.{i}")
    return results


def bench(
    ops: Annotated[int, typer.Option("--ops", min=1, help="Operations per phase.")] = 200,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=1024, help="Concurrent workers.")
    ] = 8,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure set, get and snapshot throughput (ops/s); removes everything it wrote."""

    async def work() -> dict[str, Any]:
        async with connect(url) as store:
            info = await store.describe()
            results = await bench_store(store, ops, concurrency)
            results["backend"] = info.backend
            return results

    results = run(work)
    if as_json:
        emit_json(results)
        return
    from rich.table import Table  # only for this table: other commands never load Rich

    table = Table(title=f"{results['backend']}: {ops} ops, {concurrency} workers")
    table.add_column("operation")
    table.add_column("ops/s", justify="right")
    for name in ("set", "get", "snapshot"):
        table.add_row(name, f"{results[f'{name}_ops_per_s']:,.0f}")
    rich_console().print(table)
