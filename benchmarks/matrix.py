"""Every backend statekit is tested and measured on, reached by URL: one list for both.

The contract suite (``tests/test_contract_*.py``, through ``tests/services.py``) and the
benchmark runner (``python -m benchmarks.run``) read their targets from here, so a new
target (a backend, or a new way to reach one) is added once. Each target says how its URL
is found: a real server named by an environment variable (the benchmarks fall back to the
local server CI starts), a server a test session starts itself (a fixture), or a URL
that needs no server (a file in a fresh directory, or memory). It also names the option
that gives one run storage of its own on a shared server, its pytest marker, and whether
it is slow.

Targets built from a host-owned client rather than a URL (fakeredis, a host's SQLAlchemy
engine) and a backend without optional capabilities are test-specific: their test
modules build them. This module imports neither pytest nor a driver.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

#: The file name a directory-based target's database gets.
DATABASE_FILE = "state.db"


@dataclass(frozen=True)
class Target:
    """One way to reach one backend.

    Exactly one of ``env_var`` (a real server's URL is in this environment variable),
    ``server`` (the name of the session fixture that starts a server and gives its URL)
    or ``url`` (no server needed; ``{directory}`` is replaced by a fresh directory) is set.
    ``private`` is the option that keeps a run's data apart on a shared server
    (``"key_prefix"`` or ``"schema"``), ``None`` where each run gets fresh storage anyway.
    """

    name: str
    marker: str
    env_var: str | None = None
    server: str | None = None
    url: str | None = None
    default_url: str | None = None  # where the benchmarks look when env_var is unset
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    private: str | None = None
    slow: bool = False

    def __post_init__(self) -> None:
        sources = [self.env_var, self.server, self.url]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(f"target {self.name!r} needs one of env_var, server or url")

    def url_from_env(self) -> str | None:
        """The URL in ``env_var``, else ``default_url`` (``None`` for other targets)."""
        if self.env_var is None:
            return None
        return os.environ.get(self.env_var) or self.default_url

    def url_in(self, directory: Path) -> str:
        """The URL of a target that needs no server, its files under ``directory``."""
        if self.url is None:
            raise ValueError(f"target {self.name!r} is reached through a server")
        return self.url.format(directory=directory.resolve())


MEMORY = Target("memory", "memory", url="memory://")
REDIS = Target(
    "redis",
    "redis",
    env_var="STATEKIT_REDIS_URL",
    default_url="redis://127.0.0.1:6379/13",
    private="key_prefix",
)
REDIS_CLUSTER = Target(
    "redis-cluster", "redis", server="redis_cluster_url", private="key_prefix", slow=True
)
REDIS_SENTINEL = Target(
    "redis-sentinel", "redis", server="redis_sentinel_url", private="key_prefix", slow=True
)
POSTGRES = Target(
    "postgres",
    "postgres",
    env_var="STATEKIT_POSTGRES_URL",
    default_url="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    private="schema",
)
SQLITE = Target("sqlite", "sqlite", url=f"sqlite+aiosqlite:///{{directory}}/{DATABASE_FILE}")
SQLITE_MEMORY = Target("sqlite-memory", "sqlite", url="sqlite+aiosqlite:///:memory:")

#: Every target, by name.
MATRIX: Mapping[str, Target] = MappingProxyType(
    {
        t.name: t
        for t in (MEMORY, REDIS, REDIS_CLUSTER, REDIS_SENTINEL, POSTGRES, SQLITE, SQLITE_MEMORY)
    }
)
#: The targets the benchmark runner measures (each has an opener in ``contenders``).
BENCHMARKED: tuple[Target, ...] = (REDIS, POSTGRES, SQLITE)
