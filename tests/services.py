"""Where the real servers are, what to do when one is missing, and opening a matrix target.

The targets themselves are listed once, in :mod:`benchmarks.matrix`; this module is the
pytest side of them: their marks, their URL (an environment variable, a session fixture
or a fresh directory) and a backend with storage of its own on a shared server.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from benchmarks.matrix import Target
from statekit.backends.base import StateBackend
from statekit.backends.registry import open_backend
from statekit.errors import StoreClosedError

REQUIRE_SERVICES = os.environ.get("STATEKIT_REQUIRE_SERVICES") == "1"
#: The session fixture holding a private PostgreSQL schema (see ``conftest.py``).
SCHEMA_FIXTURE = "session_schema"

_Class = TypeVar("_Class", bound=type)
_Backend = TypeVar("_Backend", bound=StateBackend)


def service_url(env_var: str) -> str:
    """The URL of a real server from ``env_var``.

    Without it the calling test is skipped, unless ``STATEKIT_REQUIRE_SERVICES=1`` (CI),
    where a missing server is a failure: CI must never pass by skipping real backends.
    """
    url = os.environ.get(env_var)
    if url:
        return url
    message = f"{env_var} is not set"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and STATEKIT_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def on(target: Target) -> Callable[[_Class], _Class]:
    """Mark a contract class as running on ``target``: its marker (``-m redis``), ``slow``
    if the target is, and ``cls.target``, which ``open_target(cls.target, ...)`` opens."""

    def decorate(cls: _Class) -> _Class:
        getattr(pytest.mark, target.marker)(cls)
        if target.slow:
            pytest.mark.slow(cls)
        setattr(cls, "target", target)  # noqa: B010 - a class attribute of any class
        return cls

    return decorate


def target_url(target: Target, request: pytest.FixtureRequest) -> str:
    """``target``'s URL for this test: from its environment variable (skip or fail as
    :func:`service_url` does), from its server fixture, or in the test's own directory."""
    if target.env_var is not None:
        return service_url(target.env_var)
    if target.server is not None:
        url: str = request.getfixturevalue(target.server)
        return url
    return target.url_in(request.getfixturevalue("tmp_path"))


def _private_options(target: Target, request: pytest.FixtureRequest) -> dict[str, Any]:
    if target.private == "key_prefix":
        return {"key_prefix": f"statekit-test:{uuid.uuid4().hex}:"}
    if target.private == "schema":
        return {"schema": request.getfixturevalue(SCHEMA_FIXTURE)}
    return {}


@contextlib.asynccontextmanager
async def open_target(
    target: Target, request: pytest.FixtureRequest, **options: Any
) -> AsyncIterator[StateBackend]:
    """A backend on ``target`` with storage of its own; ``options`` win over the target's.

    Everything it wrote is cleared and its connections closed afterwards.
    """
    chosen = {**target.options, **_private_options(target, request), **options}
    async with cleared(open_backend(target_url(target, request), chosen, {})) as backend:
        yield backend


@contextlib.asynccontextmanager
async def cleared(backend: _Backend) -> AsyncIterator[_Backend]:
    """``backend`` for the block; everything it wrote is cleared and its connections
    closed afterwards (closed even when clearing fails)."""
    try:
        yield backend
    finally:
        try:
            # A test may have closed it (the after-aclose contract): nothing to clear then.
            with contextlib.suppress(StoreClosedError):
                await backend.clear()
        finally:
            await backend.aclose()
