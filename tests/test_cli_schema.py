"""``statekit doctor`` changes nothing and tells the truth; ``statekit init`` creates the
schema. On SQLite files and on a private schema of the real PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlsupport import postgres_url, private_schema

from statekit import connect
from statekit.cli.runtime import ExitCode

RUNNER = ["--scope", "runner", "--runner", "r-1"]
TIMEOUT = 60


def statekit_cmd(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEKIT_")}
    return subprocess.run(
        [sys.executable, "-m", "statekit.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=TIMEOUT,
    )


def sqlite_tables(path: Path) -> list[str]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return sorted(name for (name,) in rows)


# ---- SQLite -------------------------------------------------------------------------


@pytest.mark.sqlite
def test_doctor_on_a_fresh_sqlite_file_is_unhealthy_and_creates_no_table(tmp_path: Path) -> None:
    result = statekit_cmd(tmp_path, "doctor")
    assert result.returncode == ExitCode.BACKEND_UNAVAILABLE.value == 3
    assert result.stdout == ""
    assert result.stderr == (
        "statekit: unhealthy: sqlite+aiosqlite:///./statekit.db: layout: missing table "
        "statekit_state; run `statekit init` with the same URL\n"
    )
    report = json.loads(statekit_cmd(tmp_path, "doctor", "--json").stdout)
    assert (report["healthy"], report["layout"], report["fix"]) == (
        False,
        "missing table statekit_state",
        "statekit init",
    )
    assert "latency_ms" not in report
    assert sqlite_tables(tmp_path / "statekit.db") == []


@pytest.mark.sqlite
def test_init_creates_the_schema_then_doctor_is_healthy(tmp_path: Path) -> None:
    first = statekit_cmd(tmp_path, "init")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "ready: sqlite statekit_state\n"
    assert sqlite_tables(tmp_path / "statekit.db") == ["statekit_state", "statekit_state_scopes"]
    again = statekit_cmd(tmp_path, "init", "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["ready"] is True
    doctor = statekit_cmd(tmp_path, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    assert json.loads(doctor.stdout)["healthy"] is True


@pytest.mark.sqlite
def test_a_create_schema_false_deployment_is_ready_after_init(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/state.db?create_schema=false"
    before = statekit_cmd(tmp_path, "set", "k", "1", *RUNNER, "--url", url)
    # A missing table is a setting to fix, not an outage: exit 2, naming the command.
    assert before.returncode == ExitCode.USAGE
    assert "missing table statekit_state" in before.stderr
    assert "`statekit init`" in before.stderr
    assert statekit_cmd(tmp_path, "init", "--url", url).returncode == 0
    assert statekit_cmd(tmp_path, "set", "k", "1", *RUNNER, "--url", url).returncode == 0
    assert statekit_cmd(tmp_path, "get", "k", *RUNNER, "--url", url).stdout == "1\n"


@pytest.mark.sqlite
def test_a_table_of_another_shape_is_unhealthy_and_init_says_it_cannot_fix_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "statekit.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE statekit_state (id INTEGER PRIMARY KEY, note TEXT)")
    doctor = statekit_cmd(tmp_path, "doctor")
    assert doctor.returncode == ExitCode.BACKEND_UNAVAILABLE
    assert "layout: missing columns: runner_id" in doctor.stderr
    init = statekit_cmd(tmp_path, "init")
    assert init.returncode == ExitCode.BACKEND_UNAVAILABLE
    [line] = init.stderr.splitlines()
    assert line.startswith("statekit: error: statekit_state exists but its layout is not")
    assert "does not change existing columns" in line
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(statekit_state)")]
    assert columns == ["id", "note"]


@pytest.mark.memory
def test_init_is_a_no_op_where_there_is_no_schema(tmp_path: Path) -> None:
    result = statekit_cmd(tmp_path, "init", "--url", "memory://")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ready: memory process memory\n"


@pytest.mark.memory
async def test_store_create_schema_is_a_no_op_on_memory() -> None:
    async with connect("memory://") as store:
        await store.create_schema()
        assert (await store.describe()).layout_ok


@pytest.mark.sqlite
async def test_store_create_schema_creates_the_sql_table(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/s.db?create_schema=false"
    async with connect(url) as store:
        assert (await store.describe()).layout == "missing table statekit_state"
        await store.create_schema()
        await store.create_schema()  # safe to repeat
        assert (await store.describe()).layout_ok


# ---- PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
def pg_schema() -> Iterator[str]:
    yield from private_schema()


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


async def _schema_exists(url: str, schema: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": schema},
            )
            return found.first() is not None
    finally:
        await engine.dispose()


@pytest.mark.postgres
def test_doctor_on_a_fresh_postgresql_schema_changes_nothing_then_init(
    tmp_path: Path, pg_schema: str
) -> None:
    server = postgres_url()
    url = _with_schema(server, pg_schema)
    doctor = statekit_cmd(tmp_path, "doctor", "--url", url, "--json")
    assert doctor.returncode == ExitCode.BACKEND_UNAVAILABLE, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["healthy"] is False
    assert report["layout"] == f"missing table {pg_schema}.statekit_state"
    assert report["fix"] == "statekit init"
    assert asyncio.run(_schema_exists(server, pg_schema)) is False

    init = statekit_cmd(tmp_path, "init", "--url", url)
    assert init.returncode == 0, init.stderr
    assert init.stdout == f"ready: postgresql {pg_schema}.statekit_state\n"
    healthy = statekit_cmd(tmp_path, "doctor", "--url", url, "--json")
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["layout"] == "ok"
