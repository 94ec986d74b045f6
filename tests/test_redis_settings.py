"""Redis settings a user gets wrong are configuration errors (exit 2), never an internal
error or an outage: a port that is not one, a database path that is not a number, a
database the server does not have (with its count), credentials the server refuses."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio
from redis_servers import RedisServer, free_port
from services import service_url

import statekit
from statekit import ConfigurationError
from statekit.backends.redis import RedisBackend
from statekit.cli.runtime import ExitCode
from statekit.store import StateStore

pytestmark = pytest.mark.redis

PASSWORD = "s3cr3t-Pa55"
SCOPE_KEY = "runner:v2:settings"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
        f"redis://:{PASSWORD}@127.0.0.1:99999/0",
        "redis://127.0.0.1:0/0",
        f"rediss://:{PASSWORD}@127.0.0.1:6379x/0",
        f"redis+cluster://:{PASSWORD}@127.0.0.1:7000,127.0.0.1:70001",
        "redis://127.0.0.1:6379/zero",
        "redis://127.0.0.1:6379/0?db=one",
    ],
)
def test_a_bad_port_or_database_is_refused_at_connect(url: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        statekit.connect(url)
    assert PASSWORD not in str(refused.value)
    assert any(word in str(refused.value) for word in ("port", "node", "database"))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "statekit"
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        cwd=cwd,
        timeout=60,
    )


def test_the_cli_reports_a_port_typo_as_a_usage_error(tmp_path: Path) -> None:
    result = _cli(
        "get", "k", "-k", SCOPE_KEY, "--url", "redis://127.0.0.1:notaport/0", cwd=tmp_path
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert result.stderr.startswith("statekit: error: Bad port")
    assert len(result.stderr.splitlines()) == 1


# ---- refused by the server ----------------------------------------------------------------


async def _database_count(url: str) -> int:
    admin = redis.asyncio.Redis.from_url(url)
    count = int((await admin.config_get("databases"))["databases"])
    await admin.aclose()
    return count


@pytest.mark.parametrize("auto_pipeline", [True, False], ids=["auto_pipeline", "direct"])
async def test_a_missing_database_is_a_configuration_error_with_the_count(
    auto_pipeline: bool,
) -> None:
    url = service_url("STATEKIT_REDIS_URL")
    count = await _database_count(url)
    missing = url.rsplit("/", 1)[0] + f"/{count + 83}"
    async with statekit.connect(missing, auto_pipeline=auto_pipeline) as store:
        for call in (store.state_get(SCOPE_KEY, "k"), store.describe()):
            with pytest.raises(ConfigurationError) as refused:
                await call
            assert f"database {count + 83} does not exist" in str(refused.value)
            assert f"the server has {count} databases (0 to {count - 1})" in str(refused.value)


def test_the_cli_reports_a_missing_database_as_a_usage_error(tmp_path: Path) -> None:
    url = service_url("STATEKIT_REDIS_URL").rsplit("/", 1)[0] + "/999"
    result = _cli("get", "k", "-k", SCOPE_KEY, "--url", url, cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "database 999 does not exist" in result.stderr


@pytest.fixture
def guarded_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own with a password, and a user who may not run CONFIG."""
    server = RedisServer(tmp_path / "redis", free_port(), "--save", "", "--appendonly", "no")
    try:
        server.start()
        admin = redis.Redis(port=server.port)
        admin.acl_setuser(
            "app",
            enabled=True,
            passwords=["+app-pw"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-config"],
        )
        admin.acl_setuser("default", enabled=True, passwords=[f"+{PASSWORD}"])  # last: locks us out
        admin.close()
        yield server
    finally:
        server.kill()


def _url(server: RedisServer, userinfo: str, db: int = 0) -> str:
    return f"redis://{userinfo}@127.0.0.1:{server.port}/{db}"


async def test_without_config_the_missing_database_hint_says_fewer(
    guarded_server: RedisServer,
) -> None:
    async with statekit.connect(_url(guarded_server, "app:app-pw", 99)) as store:
        with pytest.raises(ConfigurationError, match="the server has fewer databases"):
            await store.state_get(SCOPE_KEY, "k")
    # A host's own client has no statekit connect hook: the same error, without a count.
    client = redis.asyncio.Redis.from_url(_url(guarded_server, f":{PASSWORD}", 99))
    store = StateStore(RedisBackend(client))
    with pytest.raises(ConfigurationError, match="the server has fewer databases"):
        await store.state_get(SCOPE_KEY, "k")
    await store.aclose()
    await client.aclose()


@pytest.mark.parametrize("auto_pipeline", [True, False], ids=["auto_pipeline", "direct"])
@pytest.mark.parametrize(
    "userinfo", [":wrong-Pa55word", "app:wrong-Pa55word", ""], ids=["password", "user", "none"]
)
async def test_refused_credentials_are_a_configuration_error(
    guarded_server: RedisServer, userinfo: str, auto_pipeline: bool
) -> None:
    url = _url(guarded_server, userinfo) if userinfo else _url(guarded_server, "").replace("@", "")
    async with statekit.connect(url, auto_pipeline=auto_pipeline) as store:
        for call in (store.state_set(SCOPE_KEY, "k", 1, "r", "b", "runner"), store.describe()):
            with pytest.raises(
                ConfigurationError, match="Redis refused the credentials"
            ) as refused:
                await asyncio.wait_for(call, 10)
            assert "wrong-Pa55word" not in str(refused.value)
            assert PASSWORD not in str(refused.value)
