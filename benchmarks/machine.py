"""What a result depends on besides the code: the machine and every library's version."""

from __future__ import annotations

import os
import platform
import socket
import sqlite3
from importlib import metadata
from typing import Any

LIBRARIES = (
    "statekit",
    "redis",
    "hiredis",
    "asyncpg",
    "sqlalchemy",
    "aiosqlite",
    "pydantic",
    # the peers (the bench extra)
    "langgraph-checkpoint-postgres",
    "langgraph-checkpoint-sqlite",
    "psycopg",
    "psycopg-pool",
    "py-key-value-aio",
    "diskcache",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Host, CPU, Python and library versions; servers' versions are added per backend."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite_library": sqlite3.sqlite_version,
        "libraries": {name: _version(name) for name in LIBRARIES},
    }
