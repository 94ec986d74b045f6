"""What erasure costs on the SQL backend, in one run per engine (PostgreSQL and SQLite).

* **erase and find against the store's size**: one actor's scopes (on 4 runners, 5
  entries each) found (``find_scopes``, every scope listed) and erased while the table
  holds 10^3, 10^4 and 10^5 unrelated scopes (2 entries each, every scope name in turn):
  milliseconds per call, the median of ``--runs`` x 5 calls. Flat is the goal: the
  identity indexes make the cost follow what matches.
* **what the identity indexes cost writes**: ``SQLBackend.set`` of a 250-byte value at 1
  and 64 calls in flight, on statekit's table against the same table without its identity
  indexes, alternating in one run; once as updates (16 keys in each of 64 scopes, written
  beforehand: the benchmark suite's set) and once as first writes (a new key each call:
  every index takes an entry).

``python -m benchmarks.sql_erasure [--backends postgres sqlite] [--runs 3] [--duration 1]
[--quick]``; PostgreSQL tables go to a fresh schema, dropped at the end; SQLite to a temp
directory.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

from sqlalchemy import text

from benchmarks.harness import Op, against, compare
from benchmarks.sql_expiry import bulk_target, integer_series
from benchmarks.workload import VALUE
from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.identity import IdentityFilter
from statekit.backends.sql import SQLBackend
from statekit.backends.sql.schema import identity_index_names

VALUE_JSON = json.dumps(VALUE, separators=(",", ":"))
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SIZES = (1_000, 10_000, 100_000)
#: Scopes written by one statement of :func:`fill_unrelated`.
_FILL_CHUNK = 5_000
#: The scope names the unrelated scopes take in turn.
_NAMES = (
    "CASE s % 4 WHEN 0 THEN 'conversation' WHEN 1 THEN 'actor' WHEN 2 THEN 'subject' "
    "ELSE 'runner' END"
)


async def fill_unrelated(
    backend: SQLBackend, first: int, count: int, *, per_scope: int = 2, shared: int = 10
) -> None:
    """Scopes ``first`` to ``first + count - 1`` of ``per_scope`` entries each, written
    straight into the table (fast): every scope name in turn, each id of its own
    (``a<s>``, ``c<s>``...), runner, binding, bot and workspace among ``shared`` values."""
    postgres, table = await bulk_target(backend)
    series = integer_series(postgres, ":first", ":last")
    now = "'2024-01-01 00:00:00'"
    rows = f"SELECT i / {per_scope} AS s, i % {per_scope} AS k FROM {series}"
    insert = (
        f"INSERT INTO {table} (runner_id, binding_identity, scope, scope_key, state_key, "
        "value_json, bot_id, workspace_id, conversation_id, thread_id, actor_type, actor_id, "
        "subject_type, subject_id, created_at, updated_at) "
        f"SELECT 'r' || (s % {shared}), 'b' || (s % {shared}), {_NAMES}, 'unrelated:' || s, "
        f"'k' || k, '1', 'bot' || (s % {shared}), 'w' || (s % {shared}), 'c' || s, "
        f"'t' || s, 'user', 'a' || s, 'doc', 'sub' || s, {now}, {now} FROM ({rows}) AS r"
    )
    for start in range(first, first + count, _FILL_CHUNK):  # each within the timeout
        end = min(start + _FILL_CHUNK, first + count)
        bounds = {"first": start * per_scope, "last": end * per_scope - 1}
        await _execute(backend, insert, bounds)
    await _execute(backend, "ANALYZE" if not postgres else f"ANALYZE {table}", {})


async def _execute(backend: SQLBackend, sql: str, params: dict[str, Any]) -> None:
    async with backend.engine.begin() as conn:
        await conn.execute(text(sql), params)


def _actor(tag: str, runner: int) -> ScopeContext:
    return ScopeContext(
        f"runner-{runner}", "binding", "actor", actor_type="user", actor_id=f"{tag}.u-7"
    )


async def _erase_and_find(backend: SQLBackend, calls: int) -> dict[str, float]:
    """Milliseconds per find and per erase of one actor's 4 scopes (median of ``calls``)."""
    finds: list[float] = []
    erases: list[float] = []
    for call in range(calls):
        tag = f"t{call}.{uuid.uuid4().hex[:6]}"
        writes = [
            StateWrite(f"{tag}:{runner}", f"k{n}", VALUE_JSON, _actor(tag, runner))
            for runner in range(4)
            for n in range(5)
        ]
        await backend.set_many(writes)
        identity = IdentityFilter({"actor_id": f"{tag}.u-7"}, scope="actor")
        started = time.perf_counter()
        found = [info async for info in backend.find_scopes(identity)]
        finds.append(time.perf_counter() - started)
        started = time.perf_counter()
        erased = await backend.erase(identity)
        erases.append(time.perf_counter() - started)
        if len(found) != 4 or (erased.scopes, erased.entries) != (4, 20):
            raise AssertionError(f"found {len(found)}, erased {erased}")
    return {
        "find_ms": round(statistics.median(finds) * 1000, 2),
        "erase_ms": round(statistics.median(erases) * 1000, 2),
    }


async def _against_size(
    url: str, options: dict[str, Any], sizes: tuple[int, ...], runs: int
) -> dict[str, Any]:
    backend = SQLBackend.from_url(url, table_name="bench_erasure", **options)
    figures: dict[str, Any] = {}
    held = 0
    try:
        for size in sizes:
            await fill_unrelated(backend, held, size - held)
            held = size
            figures[f"{size} scopes"] = await _erase_and_find(backend, 5 * runs)
    finally:
        await backend.clear()
        await backend.aclose()
    return figures


def _setter(backend: SQLBackend, tag: str, new_keys: bool) -> Op:
    # The benchmark suite's event: a bot and a workspace, so those indexes take entries.
    context = ScopeContext(
        "bench-runner",
        "bench-binding",
        "actor",
        bot_id="bench-bot",
        workspace_id="bench-workspace",
        actor_type="user",
        actor_id="a",
    )
    counter = itertools.count()

    async def op(i: int) -> None:
        key = f"n{next(counter)}" if new_keys else f"k{(i // 64) % 16}"
        await backend.set(StateWrite(f"{tag}:{i % 64}", key, VALUE_JSON, context))

    return op


async def _write_cost(
    url: str, options: dict[str, Any], runs: int, duration: float
) -> dict[str, Any]:
    indexed = SQLBackend.from_url(url, table_name="bench_indexed", **options)
    plain = SQLBackend.from_url(url, table_name="bench_unindexed", **options)
    await plain.create_schema()
    for name in identity_index_names("bench_unindexed"):
        schema = plain.table.schema
        await _execute(
            plain, f'DROP INDEX "{schema}".{name}' if schema else f"DROP INDEX {name}", {}
        )
    plain = SQLBackend.from_url(url, table_name="bench_unindexed", create_schema=False, **options)
    figures: dict[str, Any] = {}
    try:
        for backend, tag in ((indexed, "idx"), (plain, "plain")):
            await asyncio.gather(*(_setter(backend, tag, False)(i) for i in range(64 * 16)))
        for new_keys, in_flight in itertools.product((False, True), (1, 64)):
            ops = {
                "identity indexes": _setter(indexed, "idx", new_keys),
                "no identity indexes": _setter(plain, "plain", new_keys),
            }
            found = await compare(ops, in_flight, duration, runs)
            kind = "first writes" if new_keys else "updates"
            figures[f"{kind}, {in_flight} in flight"] = against(found, "no identity indexes")
    finally:
        for backend in (indexed, plain):
            await backend.clear()
            await backend.aclose()
    return figures


async def run_engine(
    engine: str, runs: int, duration: float, quick: bool, sqlite_dir: str
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if engine == "postgres":
        url = os.environ.get("STATEKIT_POSTGRES_URL", PG_URL)
        options["schema"] = schema = f"statekit_bench_{uuid.uuid4().hex[:8]}"
    else:
        url = f"sqlite+aiosqlite:///{os.path.join(sqlite_dir, 'erasure.db')}"
        schema = None
    sizes = (100, 300) if quick else SIZES
    try:
        return {
            "erase and find": await _against_size(url, options, sizes, 1 if quick else runs),
            "set": await _write_cost(
                url, options, 1 if quick else runs, 0.1 if quick else duration
            ),
        }
    finally:
        if schema is not None:
            helper = SQLBackend.from_url(url, schema=schema, create_schema=False)
            await _execute(helper, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE', {})
            await helper.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["postgres", "sqlite"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as sqlite_dir:
        for engine in args.backends:
            results[engine] = asyncio.run(
                run_engine(engine, args.runs, args.duration, args.quick, sqlite_dir)
            )
            print(json.dumps({engine: results[engine]}, indent=2), flush=True)


if __name__ == "__main__":
    main()
