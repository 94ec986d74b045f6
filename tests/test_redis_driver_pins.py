"""redis-py's private API that the Redis backend relies on, pinned to the supported versions.

Each private use lives in one named function of :mod:`statekit.backends.redis.connections`;
these tests fail, naming that function, when an installed redis-py changes what it reads,
so an upgrade breaks a test here rather than the backend in production.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from packaging.requirements import Requirement
from packaging.version import Version
from redis.asyncio.connection import Connection, ConnectionPool
from services import service_url

from statekit.backends.redis import connections

pytestmark = pytest.mark.redis

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _supported_redis() -> Requirement:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    (spec,) = [r for r in project["optional-dependencies"]["redis"] if r.startswith("redis")]
    return Requirement(spec)


def test_the_installed_redis_py_is_one_the_pins_below_cover() -> None:
    supported = _supported_redis()
    installed = Version(version("redis"))
    assert supported.specifier.contains(installed), (
        f"redis {installed} is outside pyproject's {supported.specifier}: check the private "
        "API uses of statekit.backends.redis.connections (usable, check_out) against it"
    )


async def test_usable_reads_the_private_reader_of_a_connection() -> None:
    """``connections.usable`` tells a live connection from a closed one by redis-py's
    ``Connection._reader`` (``None`` once disconnected, at EOF once the server closed)."""
    pool = ConnectionPool.from_url(service_url("STATEKIT_REDIS_URL"))
    connection: Connection = pool.make_connection()  # type: ignore[no-untyped-call]
    assert hasattr(connection, "_reader"), (
        "connections.usable() reads redis-py's private Connection._reader, "
        f"which redis {version('redis')} no longer has"
    )
    assert not connections.usable(connection)  # never connected
    admin = aioredis.Redis.from_url(service_url("STATEKIT_REDIS_URL"))
    try:
        await connection.connect()  # type: ignore[no-untyped-call]
        assert connections.usable(connection), "connections.usable() sees a connected one as closed"
        await connection.send_command("CLIENT", "ID")
        own_id = await connection.read_response()
        await admin.execute_command("CLIENT", "KILL", "ID", own_id)  # type: ignore[no-untyped-call]  # only this one
        for _ in range(200):  # until the event loop has seen the server close it
            if not connections.usable(connection):
                break
            await asyncio.sleep(0.01)
        assert not connections.usable(connection), (
            "connections.usable() no longer sees a connection the server closed"
        )
        await connection.disconnect()
        assert not connections.usable(connection)
    finally:
        await connection.disconnect()
        await admin.aclose()
        await pool.disconnect()


def test_the_checkout_probe_reads_the_signature_of_this_redis_py() -> None:
    """``connections.checkout_needs_a_command_name`` reads ``ConnectionPool.get_connection``'s
    signature: a required ``command_name`` before redis-py 5.3, optional (and warned
    about when given) since."""
    parameters = inspect.signature(ConnectionPool.get_connection).parameters
    needs_name = connections.checkout_needs_a_command_name()
    assert needs_name == (Version(version("redis")) < Version("5.3")), (
        "connections.checkout_needs_a_command_name() misreads ConnectionPool.get_connection"
        f"{inspect.signature(ConnectionPool.get_connection)}"
    )
    if not needs_name:
        assert all(
            p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            for name, p in parameters.items()
            if name != "self"
        ), "connections.check_out() calls ConnectionPool.get_connection() without arguments"


async def test_check_out_gives_a_connected_connection_without_warnings() -> None:
    pool = aioredis.BlockingConnectionPool.from_url(service_url("STATEKIT_REDIS_URL"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. redis-py's warning about a command name
            connection = await connections.check_out(pool)
        assert isinstance(connection, Connection)
        assert connections.usable(connection)
        await pool.release(connection)
    finally:
        await pool.disconnect()
