"""The benchmark harness runs end to end at tiny sizes and records every figure.

Timed runs stay out of the test suite; this only proves ``python -m benchmarks.run`` still
works against the real servers, peers included, and writes a complete results document.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from services import REQUIRE_SERVICES, service_url

from benchmarks.peers import INSTALL_HINT, missing_modules
from benchmarks.raw_asyncpg import asyncpg_dsn
from benchmarks.run import main
from benchmarks.suite import OPS, QUICK

BASELINES = {
    "redis": {"raw redis-py"},
    "postgres": {"original", "raw asyncpg"},
    "sqlite": {"original"},
}
#: Each backend's peers (the bench extra), and the operations each cannot do.
PEERS: dict[str, dict[str, set[str]]] = {
    "redis": {"py-key-value RedisStore": set()},
    "postgres": {
        "LangGraph AsyncPostgresStore": {"list"},
        "py-key-value PostgreSQLStore": {"snapshot", "list"},
    },
    "sqlite": {
        "LangGraph AsyncSqliteStore (WAL)": {"list"},
        "LangGraph AsyncSqliteStore (default journal)": {"list"},
        "py-key-value DiskStore": {"snapshot", "list"},
    },
}
STATEKIT = {
    "redis": {"statekit", "statekit, auto_pipeline off"},
    "postgres": {"statekit"},
    "sqlite": {"statekit"},
}


def _peers_expected() -> bool:
    """Whether the bench extra is installed; under STATEKIT_REQUIRE_SERVICES=1 it must be,
    so CI cannot pass without measuring the peers."""
    missing = missing_modules()
    if missing and REQUIRE_SERVICES:
        pytest.fail(
            f"the bench extra is missing ({', '.join(missing)}) and "
            f"STATEKIT_REQUIRE_SERVICES=1: {INSTALL_HINT}",
            pytrace=False,
        )
    return not missing


def _quick_run(tmp_path: Path, backend: str, *options: str) -> dict[str, Any]:
    out = tmp_path / "results.json"
    assert main(["--quick", "--backends", backend, "--out", str(out), *options]) == 0
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def _assert_positive(mapping: dict[str, Any], *names: str) -> None:
    for name in names:
        value = mapping[name]
        assert isinstance(value, (int, float)), (name, value)
        assert value > 0, (name, value)


def _assert_comparison(comparison: dict[str, Any], backend: str, peers: bool) -> None:
    figures, unavailable = comparison["figures"], comparison["unavailable"]
    expected_peers = PEERS[backend] if peers else {}
    cannot = {name for name, ops in expected_peers.items() if comparison["op"] in ops}
    assert set(unavailable) == cannot
    assert all(unavailable.values()), "every operation not available says why"
    baselines = BASELINES[backend] | set(expected_peers)
    assert set(comparison["families"]) == baselines
    measured = baselines - cannot
    assert measured <= set(figures)
    for figure in figures.values():
        _assert_positive(figure, "ops_per_s", "p50_ms", "p99_ms")
        assert figure["runs"]
        for run in figure["runs"]:
            _assert_positive(run, "ops", "seconds", "ops_per_s", "p50_ms", "p99_ms")
    subjects = set(figures) - measured
    assert subjects
    assert subjects <= STATEKIT[backend]
    pairs = {(r["statekit"], r["baseline"]) for r in comparison["ratios"]}
    assert pairs == {(s, b) for s in subjects for b in measured}
    for ratio in comparison["ratios"]:
        _assert_positive(ratio, "ops_per_s", "p50_ms", "p99_ms")


def _assert_complete(document: dict[str, Any], backend: str, peers: bool = True) -> None:
    assert set(document["backends"]) == {backend}
    result = document["backends"][backend]
    assert result["server"]
    measured = {(c["op"], c["in_flight"]) for c in result["main"]}
    assert measured == {(op, n) for op in OPS for n in QUICK.in_flight}
    for comparison in result["main"] + result["scaling"]:
        _assert_comparison(comparison, backend, peers)
    grown = {(c["op"], c["scope_size"]) for c in result["scaling"] if c["scope_size"]}
    assert grown == {(op, n) for op in ("snapshot", "list") for n in QUICK.scope_sizes}
    concurrency = {c["in_flight"] for c in result["scaling"] if c["scope_size"] is None}
    assert concurrency == set(QUICK.concurrency)
    machine = document["machine"]
    assert machine["cpu_count"] > 0
    assert machine["python"]
    assert machine["libraries"]["statekit"]
    assert document["targets"], "every backend has targets at 1 in flight"
    for target in document["targets"]:
        assert target["backend"] == backend
        _assert_positive(target, "minimum", "reached")


def _run_id(document: dict[str, Any], backend: str) -> str:
    """The run's id, from statekit's namespace (``statekit[-_]bench[-_]<id>``)."""
    found = re.search(
        r"statekit[-_]bench[-_]([0-9a-f]{12})", document["backends"][backend]["where"]
    )
    assert found, document["backends"][backend]["where"]
    return found.group(1)


def test_missing_peers_fail_the_smoke_run_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "missing_modules", lambda: ["diskcache"])
    monkeypatch.setattr(sys.modules[__name__], "REQUIRE_SERVICES", True)
    with pytest.raises(pytest.fail.Exception, match="bench extra is missing"):
        _peers_expected()
    monkeypatch.setattr(sys.modules[__name__], "REQUIRE_SERVICES", False)
    assert _peers_expected() is False  # measured without them, not skipped


@pytest.mark.sqlite
def test_quick_run_on_sqlite_records_every_figure_and_removes_its_database(
    tmp_path: Path,
) -> None:
    peers = _peers_expected()
    databases = tmp_path / "databases"
    databases.mkdir()
    document = _quick_run(tmp_path, "sqlite", "--sqlite-dir", str(databases))
    _assert_complete(document, "sqlite", peers)
    assert list(databases.iterdir()) == []


@pytest.mark.sqlite
def test_a_quick_run_without_peers_measures_statekit_and_its_baselines_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _quick_run(tmp_path, "sqlite", "--no-peers", "--sqlite-dir", str(tmp_path))
    _assert_complete(document, "sqlite", peers=False)
    assert "vs LangGraph" not in capsys.readouterr().out


async def _keys_left(url: str, match: str) -> list[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        return [key async for key in client.scan_iter(match=match, count=1000)]
    finally:
        await client.aclose()


async def _schemas_left(url: str, run_id: str) -> list[str]:
    """The run's schemas, and the schemas holding py-key-value's table, still there."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        schemas = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])",
            [f"statekit_bench_{run_id}", f"bench_peer_{run_id}"],
        )
        tables = await conn.fetch(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = $1",
            f"kv_bench_{run_id}",
        )
    finally:
        await conn.close()
    return [row[0] for row in [*schemas, *tables]]


@pytest.mark.redis
def test_quick_run_on_redis_records_every_figure_and_removes_its_keys(tmp_path: Path) -> None:
    url = service_url("STATEKIT_REDIS_URL")
    peers = _peers_expected()
    document = _quick_run(tmp_path, "redis", "--redis-url", url)
    _assert_complete(document, "redis", peers)
    match = f"statekit-bench-{_run_id(document, 'redis')}*"
    assert asyncio.run(_keys_left(url, match)) == []


@pytest.mark.postgres
def test_quick_run_on_postgres_records_every_figure_and_drops_its_schemas(
    tmp_path: Path,
) -> None:
    url = service_url("STATEKIT_POSTGRES_URL")
    peers = _peers_expected()
    document = _quick_run(tmp_path, "postgres", "--postgres-url", url)
    _assert_complete(document, "postgres", peers)
    assert asyncio.run(_schemas_left(url, _run_id(document, "postgres"))) == []


@pytest.mark.redis
async def test_the_redis_expiry_benchmark_measures_every_case_and_the_memory_per_scope() -> None:
    from benchmarks import redis_expiry

    url = service_url("STATEKIT_REDIS_URL")
    document = await redis_expiry.main(url, runs=1, scopes=5, quick=True)
    cases = {(c["level"], c["auto_pipeline"], c["in_flight"]) for c in document["write_cost"]}
    assert cases == {
        (level, pipelined, n)
        for level in ("backend", "store")
        for pipelined, n in redis_expiry.CASES
    }
    for case in document["write_cost"]:
        _assert_positive(case, "no_ttl_ops_per_s", "ttl_ops_per_s", "ratio")
    memory = document["memory"]
    _assert_positive(memory, "memory_usage_per_scope")  # used_memory: shared, noisy
    # Four keys, ten values of ~210 bytes: the values alone are 2.1 KB.
    assert memory["memory_usage_per_scope"] > 10 * memory["value_json_bytes"]


@pytest.mark.redis
async def test_the_redis_erasure_benchmark_measures_every_size() -> None:
    from benchmarks import redis_erasure

    rows = await redis_erasure.main(service_url("STATEKIT_REDIS_URL"), runs=1, sizes=[20, 40])
    assert [row["unrelated_scopes"] for row in rows] == [20, 40]
    for row in rows:
        _assert_positive(row, "find_s", "erase_s", "index_bytes_per_scope", "create_s_per_scope")


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
async def test_the_sql_erasure_benchmark_measures_every_size_and_case(
    engine: str, tmp_path: Path
) -> None:
    from benchmarks import sql_erasure

    if engine == "postgres":
        service_url("STATEKIT_POSTGRES_URL")  # skipped (or failed in CI) without a server
    document = await sql_erasure.run_engine(engine, 1, 0.1, True, str(tmp_path))
    assert list(document["erase and find"]) == ["100 scopes", "300 scopes"]
    for figures in document["erase and find"].values():
        _assert_positive(figures, "find_ms", "erase_ms")
    assert len(document["set"]) == 4
    for case in document["set"].values():
        for figures in case.values():
            _assert_positive(figures, "ops_per_s", "ratio")


@pytest.mark.sqlite
async def test_the_sqlite_latency_benchmark_times_every_contender(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import sqlite_latency

    await sqlite_latency.main(runs=1, total=20, chunk=10, layers=True)
    rows = capsys.readouterr().out.splitlines()[2:]
    timed = {row[:20].strip(): row[20:].split() for row in rows}
    expected = {"statekit", "statekit on thread", "diskstore", "raw aiosqlite", "raw sqlite3"}
    expected |= {"backend.get", "gateway.run", "task+greenlet+pool", "greenlet+pool", "execute"}
    assert set(timed) == expected
    for figures in timed.values():
        assert len(figures) == 4
        assert all(float(figure.rstrip("x")) > 0 for figure in figures)


@pytest.mark.postgres
async def test_the_cpu_split_benchmark_reports_both_sides_for_every_contender(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import cpu_split

    url = service_url("STATEKIT_POSTGRES_URL")
    argv = ["--runs", "1", "--duration", "0.05", "--in-flight", "4", "--no-peers"]
    await cpu_split.main(cpu_split.parse_args([*argv, "--postgres-url", url]))
    rows = capsys.readouterr().out.splitlines()[2:]
    found = {
        row[:36].strip(): [float(f.replace(",", "")) for f in row[36:].split()] for row in rows
    }
    assert set(found) == {"statekit", "original", "raw asyncpg"}
    for ops, client, _server in found.values():  # a run this short may see no server tick
        assert ops > 0
        assert client > 0
    assert cpu_split.server_cpu_seconds() > 0  # the local server's processes are seen
