"""SQL URLs: every query parameter is checked when the backend is built, a malformed URL
or a setting the server refuses is a ``ConfigurationError`` that says what is wrong (and
never shows the password)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlsupport import postgres_url

from statekit.backends.base import ScopeContext, StateWrite
from statekit.backends.sql import SQLBackend
from statekit.backends.sql.urlparams import driver_arguments, server_settings
from statekit.errors import BackendUnavailableError, ConfigurationError, StateBackendError

PG = "postgresql+asyncpg://alice:s3cret@db.example:5432/app"
CTX = ScopeContext("runner-1", "binding-1", "runner")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # A query parameter without a use, refused by name.
        (PG + "?timout=2", "Unknown SQL URL parameter 'timout' (did you mean 'timeout'?)"),
        (PG + "?pool_szie=2", "did you mean 'pool_size'?"),
        (PG + "?sslrootcert=/ca.pem", "'sslrootcert' has no asyncpg equivalent"),
        (PG + "?sslmode=sometimes", "sslmode='sometimes' is not one of disable"),
        (PG + "?sslmode=require&ssl=disable", "clash"),
        (PG + "?statement_cache_size=many", "is not an integer"),
        (PG + "?options=-c%20statement_timeout%3D1", "'timeout' option"),
        (PG + "?options=verbose", "expected '-c name=value'"),
        ("sqlite+aiosqlite:///x.db?timout=2", "did you mean 'timeout'?"),
        ("sqlite+aiosqlite:///x.db?mode=ro", "add uri=true"),
        ("sqlite+aiosqlite:///x.db?isolation_level=SERIALIZABLE", "autocommit"),
        ("sqlite+aiosqlite:///x.db?uri=true&mode=ro", "write it as file:PATH"),
        ("sqlite+aiosqlite:///:memory:?uri=true&cache=shared", "write it as file:PATH"),
        ("sqlite+aiosqlite:///file:x.db", "needs uri=true"),
        # A malformed URL.
        ("postgresql+asyncpg://alice:s3cret@db.example:notaport/app", "port is not a number"),
        ("sqlite+aiosqlite://./x.db", "a SQLite URL has no host"),
        ("sqlite://host/x.db", "three slashes"),
    ],
)
def test_a_bad_url_says_what_is_wrong_without_the_password(
    url: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a relative SQLite path would be created
    with pytest.raises(ConfigurationError) as refused:
        SQLBackend.from_url(url)
    assert message in str(refused.value)
    assert "s3" not in str(refused.value)
    assert "cret" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # refused: nothing written


def test_libpq_parameters_become_asyncpg_arguments() -> None:
    query = "?sslmode=verify-full&options=-c%20search_path%3Dtenant%20--work_mem%3D4MB"
    url, arguments = driver_arguments(make_url(PG + query + "&statement_cache_size=0"))
    assert url.query == {}
    assert arguments == {
        "ssl": "verify-full",
        "server_settings": {"search_path": "tenant", "work_mem": "4MB"},
        "statement_cache_size": 0,
    }
    assert server_settings(r"-c search_path=a\ b -csynchronous_commit=off") == {
        "search_path": "a b",
        "synchronous_commit": "off",
    }


def test_sqlite_uri_parameters_are_kept_with_uri_true(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///file:{tmp_path / 'x.db'}?uri=true&mode=rwc&cache=private"
    assert SQLBackend.from_url(url).engine.url.query == {
        "uri": "true",
        "mode": "rwc",
        "cache": "private",
    }


@pytest.mark.sqlite
async def test_sqlite_uri_parameters_reach_sqlite(tmp_path: Path) -> None:
    """``mode=ro`` is read-only, and the file is the path's, not one named after the
    whole URI (``x.db?mode=ro``, what sqlite3 makes of a path that is not ``file:``)."""
    url = f"sqlite+aiosqlite:///file:{tmp_path / 'x.db'}?uri=true"
    writer = SQLBackend.from_url(url + "&mode=rwc")
    try:
        await writer.set(StateWrite("s", "k", "1", CTX))
    finally:
        await writer.aclose()
    reader = SQLBackend.from_url(url + "&mode=ro")
    try:
        assert await reader.get("s", "k") == "1"
        with pytest.raises(StateBackendError, match="readonly"):
            await reader.set(StateWrite("s", "k", "2", CTX))
    finally:
        await reader.aclose()
    assert set(os.listdir(tmp_path)) <= {"x.db", "x.db-wal", "x.db-shm"}


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("sqlite+aiosqlite://./x.db", 2, "has no host"),
        ("postgresql://u@localhost:notaport/db", 2, "port is not a number"),
        ("postgresql://u@localhost/db?timout=2", 2, "did you mean 'timeout'?"),
    ],
)
def test_the_cli_reports_a_bad_sql_url_as_a_usage_error(
    tmp_path: Path, url: str, code: int, message: str
) -> None:
    statekit = Path(sys.executable).with_name("statekit")
    done = subprocess.run(
        [str(statekit), "get", "--url", url, "--scope-key", "s", "k"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "internal error" not in done.stderr


# ---- what the server refuses ------------------------------------------------------------


def _with(url: str, *, user: str | None = None, database: str | None = None) -> str:
    parsed = make_url(url)
    if user is not None:
        parsed = parsed.set(username=user, password="pw-never-shown")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"database": "statekit_no_such_db"}, "(createdb statekit_no_such_db)"),
        ({"user": "statekit_no_such_role"}, "(createuser statekit_no_such_role)"),
    ],
)
async def test_a_missing_database_or_role_is_a_configuration_error_with_a_hint(
    change: dict[str, str], message: str
) -> None:
    backend = SQLBackend.from_url(_with(postgres_url(), **change))
    try:
        with pytest.raises(ConfigurationError) as refused:
            await backend.get("s", "k")
        assert message in str(refused.value)
        assert "pw-never-shown" not in str(refused.value)
        with pytest.raises(ConfigurationError):
            await backend.describe()
    finally:
        await backend.aclose()


@pytest.mark.postgres
async def test_sslmode_reaches_asyncpg() -> None:
    # The test server has no TLS: "require" is refused by it, "disable" connects.
    required = SQLBackend.from_url(postgres_url() + "?sslmode=require&table_name=sqlb_ssl")
    disabled = SQLBackend.from_url(postgres_url() + "?sslmode=disable&table_name=sqlb_ssl")
    try:
        with pytest.raises(BackendUnavailableError, match="SSL"):
            await required.describe()
        assert (await disabled.describe()).backend == "postgresql"
    finally:
        await required.aclose()
        await disabled.aclose()
