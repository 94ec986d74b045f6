"""The command and connect() on the real backends: SQLite files and Redis (fakeredis)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar

import fakeredis
import pytest
from services import service_url
from typer.testing import CliRunner

from statekit import BackendURL, ConfigurationError, connect
from statekit.backends import registry
from statekit.backends.redis import RedisBackend
from statekit.backends.sql import SQLBackend
from statekit.cli.app import app
from statekit.cli.runtime import ExitCode
from statekit.testing import new_identity

runner = CliRunner()
IDENTITY = ["--runner", "r-1", "--binding", "b-1", "--bot", "bot-1", "--conversation", "c-1"]
CONVERSATION = ["--scope", "conversation", *IDENTITY]


class FakeRedisBackend(RedisBackend):
    """``fakeredis://NAME``: a RedisBackend on an in-process fakeredis server per name."""

    servers: ClassVar[dict[str, fakeredis.FakeServer]] = {}

    @classmethod
    def from_url(cls, url: str | BackendURL, **options: Any) -> FakeRedisBackend:
        name = str(url).split("://", 1)[1]
        server = cls.servers.setdefault(name, fakeredis.FakeServer())
        client = fakeredis.FakeAsyncRedis(server=server)
        return cls(client, options.get("key_prefix", "statekit-test:"))


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    FakeRedisBackend.servers = {}
    entry = registry.Registration(f"{__name__}:FakeRedisBackend")
    monkeypatch.setitem(registry.BUILTIN_BACKENDS, "fakeredis", entry)
    for name in ("URL", "KEY_PREFIX", "TABLE_NAME", "POOL_SIZE", "TIMEOUT", "CONNECT_TIMEOUT"):
        monkeypatch.delenv(f"STATEKIT_{name}", raising=False)
    monkeypatch.chdir(tmp_path)


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def sqlite_url(tmp_path: Path, name: str = "state.db") -> str:
    return f"sqlite+aiosqlite:///{tmp_path / name}"


async def entries_of(url: str) -> dict[tuple[str, str], tuple[str, Any]]:
    async with connect(url) as store:
        return {(e.scope_key, e.state_key): (e.value_json, e.context) async for e in store.export()}


async def fill(url: str, scopes: int, keys: int) -> None:
    async with connect(url) as store:
        for s in range(scopes):
            ident = new_identity()
            updates = [
                (scope, f"k{k}", {"s": s, "k": k})
                for scope in ("conversation", "actor")
                for k in range(keys)
            ]
            results = await store.apply_updates_from_event(
                ident.event, ident.binding, ident.descriptor, updates
            )
            assert all(ok for ok, _ in results)


@pytest.mark.parametrize("backend", ["sqlite", "fakeredis"])
def test_round_trip_on_real_backends(backend: str, tmp_path: Path) -> None:
    url = ["--url", sqlite_url(tmp_path) if backend == "sqlite" else "fakeredis://a"]
    assert cli("set", "profile", '{"lang": "fr"}', *CONVERSATION, *url).exit_code == 0
    assert cli("set", "profile.theme", '"dark"', *CONVERSATION, *url).exit_code == 0
    got = json.loads(cli("get", "profile", *CONVERSATION, *url, "--json").stdout)
    assert (got["found"], got["value"], got["version"]) == (True, {"lang": "fr"}, 1)
    listed = json.loads(cli("list", *CONVERSATION, *url, "--json").stdout)
    assert listed["keys"] == ["profile", "profile.theme"]
    snap = json.loads(cli("snapshot", *IDENTITY, *url, "--json").stdout)
    assert snap["conversation"] == {
        "profile": {"lang": "fr"},
        "profile.theme": "dark",
        "external.conversation_id": "c-1",
    }
    assert cli("delete", "profile", *CONVERSATION, *url).exit_code == 0
    assert cli("get", "profile", *CONVERSATION, *url).exit_code == ExitCode.NOT_FOUND_OR_REFUSED
    if backend == "sqlite":  # fakeredis has no INFO: doctor runs on real Redis below
        assert cli("doctor", *url).exit_code == 0


def test_default_url_is_the_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    assert cli("set", "k", "1", "--scope", "runner", "--runner", "r").exit_code == 0
    assert (tmp_path / "statekit.db").is_file()
    assert cli("get", "k", "--scope", "runner", "--runner", "r").stdout.strip() == "1"


@pytest.mark.parametrize(("source", "target"), [("sqlite", "fakeredis"), ("fakeredis", "sqlite")])
def test_migrate_between_sqlite_and_redis(source: str, target: str, tmp_path: Path) -> None:
    urls = {"sqlite": sqlite_url(tmp_path), "fakeredis": "fakeredis://a"}
    asyncio.run(fill(urls[source], scopes=5, keys=4))
    dry = cli("migrate", "--from", urls[source], "--to", urls[target], "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["entries"] == 40
    assert asyncio.run(entries_of(urls[target])) == {}

    for _ in range(2):  # the second run is a safe re-run
        result = cli(
            "migrate", "--from", urls[source], "--to", urls[target], "--batch-size", "7", "--json"
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert (report["entries"], report["scopes"], report["verified"]) == (40, 10, True)
        assert asyncio.run(entries_of(urls[target])) == asyncio.run(entries_of(urls[source]))


@pytest.mark.parametrize("env_var", ["STATEKIT_REDIS_URL", "STATEKIT_POSTGRES_URL"])
def test_doctor_on_the_real_servers(env_var: str, request: pytest.FixtureRequest) -> None:
    # Read-only: describe() and a GET of a random absent key, once the schema exists.
    url = service_url(env_var)
    if env_var == "STATEKIT_POSTGRES_URL":
        schema = request.getfixturevalue("session_schema")
        url = f"{url}{'&' if '?' in url else '?'}schema={schema}"
        assert cli("init", "--url", url).exit_code == 0
    result = cli("doctor", "--url", url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["server_version"]
    assert report["latency_ms"] > 0


def test_doctor_on_an_unreachable_redis_fails_fast_and_cleanly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli(
        "doctor",
        "--url",
        f"redis://127.0.0.1:{port}/0?connect_timeout=0.5&retries=0",
        "--timeout",
        "3",
    )
    assert result.exit_code == ExitCode.BACKEND_UNAVAILABLE
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.output


def test_settings_reach_the_sql_and_redis_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEKIT_TABLE_NAME", "custom_state")
    monkeypatch.setenv("STATEKIT_KEY_PREFIX", "custom:")
    sql = connect(sqlite_url(tmp_path))
    assert isinstance(sql.backend, SQLBackend)
    assert "custom_state" in sql.backend.table_fullname
    redis = connect("redis://127.0.0.1:1/0")
    assert isinstance(redis.backend, RedisBackend)
    assert "custom:" in repr(redis.backend)


@pytest.mark.parametrize(
    ("url", "driver", "extra"),
    [
        ("redis://localhost/0", "redis", "redis"),
        ("redis+cluster://localhost:7000", "redis", "redis"),
        ("postgresql+asyncpg://localhost/db", "sqlalchemy", "postgres"),
        ("sqlite+aiosqlite:///x.db", "sqlalchemy", "sqlite"),
    ],
)
def test_missing_driver_names_the_extra_to_install(
    url: str, driver: str, extra: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # where a relative SQLite path would be created
    for name in list(sys.modules):
        if name == driver or name.startswith(
            (f"{driver}.", "statekit.backends.redis", "statekit.backends.sql")
        ):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, driver, None)
    with pytest.raises(ConfigurationError) as caught:
        connect(url)
    assert f"pip install 'statekit[{extra}]'" in str(caught.value)
    assert f"'{driver}'" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
