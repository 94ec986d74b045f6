"""What expiry costs on the SQL backend, in one run per engine (PostgreSQL and SQLite).

* **set with a ttl against without**, at 1 and 64 calls in flight, alternating in one
  run: ``SQLBackend.set`` of a 250-byte value on the same table, the writes spread over 64
  scopes (and once all in one scope, where writes with a ttl queue for the scope's row);
  with the deadline tolerance of 0.1% as a third contender, and, as a reference, a table
  without scopes table (statekit before expiry).
* **sweep throughput**: 10^5 expired entries (10 per scope) swept alone, in rows/s.
* **sweep under writers**: the same with 16 writers writing to live scopes meanwhile:
  the writers' worst latency.
* **PostgreSQL bytes per scope** (10 entries of 250 bytes with a deadline): the growth of
  ``pg_total_relation_size`` of both tables, per scope.

``python -m benchmarks.sql_expiry [--backends postgres sqlite] [--runs 3] [--duration 1]
[--quick]``; PostgreSQL tables go to a fresh schema, dropped at the end; SQLite to a temp
directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from benchmarks.harness import Op, against, compare
from benchmarks.workload import VALUE
from statekit.backends.base import ScopeContext, StateWrite, SweepResult
from statekit.backends.sql import SQLBackend

CTX = ScopeContext("bench-runner", "bench-binding", "conversation")
VALUE_JSON = json.dumps(VALUE, separators=(",", ":"))
TTL = 30 * 86400.0
HOUR = 3600.0
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def bulk_target(backend: SQLBackend) -> tuple[bool, str]:
    """Whether ``backend`` is on PostgreSQL, and its table as a statement names it: for
    filling tables straight with SQL (its schema created first)."""
    await backend.create_schema()
    postgres = backend.engine.dialect.name == "postgresql"
    table = backend.table.name
    return postgres, f'"{backend.table.schema}".{table}' if postgres else table


def integer_series(postgres: bool, first: str, last: str) -> str:
    """A FROM item ``g(i)`` of the integers ``first`` to ``last`` (SQL expressions)."""
    if postgres:
        return f"generate_series(CAST({first} AS int), CAST({last} AS int)) AS g(i)"
    return (
        f"(WITH RECURSIVE g(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM g "
        f"WHERE i < {last}) SELECT i FROM g) AS g"
    )


async def fill_expired(backend: SQLBackend, entries: int, per_scope: int = 10) -> None:
    """``entries`` entries in scopes of ``per_scope`` whose deadline passed long ago,
    written straight into the tables (fast)."""
    postgres, table = await bulk_target(backend)
    series = integer_series(postgres, "0", ":n - 1")
    now = "'2024-01-01 00:00:00'"
    async with backend.engine.begin() as conn:
        await conn.execute(
            text(
                f"INSERT INTO {table} (runner_id, binding_identity, scope, scope_key, "
                "state_key, value_json, created_at, updated_at) "
                f"SELECT 'r', 'b', 'conversation', 'gone:' || (i / {per_scope}), "
                f"'k' || (i % {per_scope}), '1', {now}, {now} FROM {series}"
            ),
            {"n": entries},
        )
        await conn.execute(
            text(
                f"INSERT INTO {table}_scopes (scope_key, expires_at) "
                f"SELECT 'gone:' || i, 1.0 FROM {series}"
            ),
            {"n": entries // per_scope},
        )


@dataclass
class SweepRun:
    """A sweep of expired entries, with writers to live scopes meanwhile (or none)."""

    swept: SweepResult
    seconds: float
    writes: int = 0
    worst_write_ms: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.swept.entries / self.seconds


async def sweep_under_writers(backend: SQLBackend, writers: int) -> SweepRun:
    """Sweep while ``writers`` tasks write to live scopes (with a ttl) until it is done;
    every writer's keys are checked afterwards (none may be missing)."""
    done = asyncio.Event()
    latencies: list[float] = []

    async def writer(number: int) -> int:
        count = 0
        while not done.is_set() or count == 0:
            started = time.perf_counter()
            await backend.set(StateWrite(f"live:{number}", f"k{count}", str(count), CTX, ttl=HOUR))
            latencies.append(time.perf_counter() - started)
            count += 1
        return count

    tasks = [asyncio.ensure_future(writer(n)) for n in range(writers)]
    await asyncio.sleep(0.05 if writers else 0)  # the writers are under way
    started = time.perf_counter()
    try:
        swept = await backend.sweep_expired(batch_size=1000)
    finally:
        seconds = time.perf_counter() - started
        done.set()
        counts = await asyncio.gather(*tasks)
    for number, count in enumerate(counts):
        stored = (await backend.read_scopes([f"live:{number}"]))[f"live:{number}"]
        if stored != {f"k{i}": str(i) for i in range(count)}:
            raise AssertionError(f"writer {number} lost writes during the sweep")
    worst = max(latencies, default=0.0) * 1000
    return SweepRun(swept, seconds, sum(counts), worst)


def _setter(backend: SQLBackend, tag: str, ttl: float | None, scopes: int) -> Op:
    async def op(i: int) -> None:
        scope, key = i % scopes, (i // scopes) % 16
        await backend.set(StateWrite(f"{tag}:{scope}", f"k{key}", VALUE_JSON, CTX, ttl=ttl), None)

    return op


async def _set_ratios(url: str, options: dict[str, Any], runs: int, duration: float) -> Any:
    plain = SQLBackend.from_url(url, table_name="bench_plain", **options)
    await plain.create_schema()
    async with plain.engine.begin() as conn:
        name = plain.table_fullname
        await conn.execute(text(f"DROP TABLE {name}_scopes"))
    plain = SQLBackend.from_url(url, table_name="bench_plain", create_schema=False, **options)
    expiring = SQLBackend.from_url(url, **options)
    tolerant = SQLBackend.from_url(url, **options)
    tolerant.deadline_tolerance = 0.001
    figures: dict[str, Any] = {}
    try:
        for in_flight, scopes in ((1, 64), (64, 64), (64, 1)):
            ops = {
                "no ttl": _setter(expiring, "none", None, scopes),
                "ttl": _setter(expiring, "ttl", TTL, scopes),
                "ttl, tolerance 0.1%": _setter(tolerant, "tol", TTL, scopes),
                "no scopes table": _setter(plain, "plain", None, scopes),
            }
            found = await compare(ops, in_flight, duration, runs)
            figures[f"{in_flight} in flight, {scopes} scope(s)"] = against(found, "no ttl")
    finally:
        for backend in (plain, expiring, tolerant):
            await backend.clear()
            await backend.aclose()
    return figures


async def _bytes_per_scope(url: str, options: dict[str, Any], scopes: int) -> dict[str, float]:
    backend = SQLBackend.from_url(url, table_name="bench_size", **options)
    await backend.create_schema()
    names = (backend.table_fullname, backend.table_fullname + "_scopes")
    query = "SELECT " + ", ".join(f"pg_total_relation_size('{n}')" for n in names)

    async def sizes() -> Sequence[int]:
        async with backend.engine.connect() as conn:
            return tuple((await conn.execute(text(query))).one())

    before = await sizes()
    for start in range(0, scopes, 100):
        writes = [
            StateWrite(f"size:{s}", f"k{k}", VALUE_JSON, CTX, ttl=TTL)
            for s in range(start, start + 100)
            for k in range(10)
        ]
        await backend.set_many(writes)
    after = await sizes()
    await backend.aclose()
    entries, deadlines = ((a - b) / scopes for a, b in zip(after, before, strict=True))
    return {"entries_bytes": round(entries), "scopes_bytes": round(deadlines), "rows": 11}


async def _sweeps(url: str, options: dict[str, Any], entries: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for writers in (0, 16):
        backend = SQLBackend.from_url(url, table_name=f"bench_sweep_{writers}", **options)
        if writers and "sqlite" in url:
            backend = SQLBackend.from_url(
                url, table_name=f"bench_sweep_{writers}", pool_size=1, **options
            )
        await fill_expired(backend, entries)
        run = await sweep_under_writers(backend, writers)
        found[f"{writers} writers"] = {
            "entries": run.swept.entries,
            "seconds": round(run.seconds, 2),
            "rows_per_s": round(run.rows_per_s),
            "writes": run.writes,
            "worst_write_ms": round(run.worst_write_ms, 1),
        }
        await backend.clear()
        await backend.aclose()
    return found


async def bench(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    schema = None
    if name == "postgres":
        schema = f"statekit_bench_{uuid.uuid4().hex[:8]}"
        options["schema"] = schema
    entries = 2_000 if args.quick else 100_000
    parts = args.only or ["set", "sweep", "size"]
    result: dict[str, Any] = {}
    try:
        if "set" in parts:
            result["set"] = await _set_ratios(url, options, args.runs, args.duration)
        if "sweep" in parts:
            result["sweep"] = await _sweeps(url, options, entries)
        if "size" in parts and name == "postgres":
            result["size"] = await _bytes_per_scope(url, options, 200 if args.quick else 2000)
        return result
    finally:
        if schema is not None:
            cleanup = SQLBackend.from_url(url, schema=schema)
            async with cleanup.engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await cleanup.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sql_expiry", description=__doc__)
    parser.add_argument("--backends", nargs="+", default=["postgres", "sqlite"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and durations")
    parser.add_argument(
        "--only", choices=["set", "sweep", "size"], action="append", help="these parts only"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration = 1, 0.2
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        urls = {
            "postgres": os.environ.get("STATEKIT_POSTGRES_URL", PG_URL),
            "sqlite": f"sqlite+aiosqlite:///{directory}/bench.db",
        }
        for name in args.backends:
            report[name] = asyncio.run(bench(name, urls[name], args))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
