"""The SQL backend: PostgreSQL (asyncpg) and SQLite (aiosqlite) over SQLAlchemy Core.

Importing this module imports SQLAlchemy; ``import statekit`` alone never does.
"""

from typing import Any

from statekit.backends.sql import schema
from statekit.backends.sql.backend import SQLBackend
from statekit.backends.sql.options import SQLOptions
from statekit.backends.sql.schema import DEFAULT_TABLE_NAME, scopes_table, state_table
from statekit.backends.sql.statements import EXPORT_BATCH_SIZE, prefix_successor

__all__ = [
    "DEFAULT_TABLE_NAME",
    "EXPORT_BATCH_SIZE",
    "SQLBackend",
    "SQLOptions",
    "metadata",
    "prefix_successor",
    "scopes_table",
    "state_table",
]


def __getattr__(name: str) -> Any:
    # ``metadata`` is built on first use (see statekit.backends.sql.schema).
    if name == "metadata":
        return schema.metadata
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
