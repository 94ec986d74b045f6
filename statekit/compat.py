"""The original store's names over statekit: a host switches with one changed import.

Hosts of the original SQL-only store call it as ``PersistentStateStore(db_engine)`` or
``get_persistent_state_store(db_engine)`` over their own SQLAlchemy ``AsyncEngine`` and
their existing ``agent_runner_state`` table. Importing the same names from here keeps
every call site, argument and return convention, and reads the rows as they are: the
scope keys are the same, naive UTC timestamps stay naive UTC, a ``NULL`` ``value_json``
reads as absent.

The table is used as found and never created or changed (``create_schema=False``). Until
it has a ``version`` column, versions are unavailable: ``state_get_versioned`` and
``state_set(..., expected_version=...)`` raise
:class:`~statekit.errors.UnsupportedCapabilityError` (``store.backend.capabilities``
tells, once the table has been seen). ``statekit init`` (or
``await store.backend.upgrade_schema()``) adds the column, keeping every row.

The host's engine stays the host's: ``aclose()`` returns the store's connections and
never disposes it.
"""

from __future__ import annotations

import threading

from sqlalchemy.ext.asyncio import AsyncEngine

from statekit.backends.sql import SQLBackend
from statekit.store import StateStore
from statekit.validation import MAX_VALUE_JSON_BYTES

__all__ = [
    "MAX_VALUE_JSON_BYTES",
    "TABLE_NAME",
    "PersistentStateStore",
    "get_persistent_state_store",
    "reset_persistent_state_store",
]

#: The original store's table.
TABLE_NAME = "agent_runner_state"


class PersistentStateStore(StateStore):
    """:class:`~statekit.StateStore` over ``db_engine`` and its ``agent_runner_state``
    table: the original class's constructor, methods and return conventions.

    ``schema`` names the PostgreSQL schema holding the table when it is not ``public``
    (statekit qualifies every statement; it never relies on ``search_path``).
    """

    def __init__(self, db_engine: AsyncEngine, *, schema: str | None = None) -> None:
        super().__init__(
            SQLBackend(db_engine, table_name=TABLE_NAME, schema=schema, create_schema=False)
        )
        self._db_engine = db_engine


_persistent_state_store: PersistentStateStore | None = None
_persistent_state_store_lock = threading.Lock()


def get_persistent_state_store(db_engine: AsyncEngine | None = None) -> PersistentStateStore:
    """The process-wide store, created over ``db_engine`` on the first call.

    Later calls return the same store and ignore ``db_engine``. Raises ``RuntimeError``
    if the first call has none, as the original did.
    """
    global _persistent_state_store
    with _persistent_state_store_lock:
        if _persistent_state_store is None:
            if db_engine is None:
                raise RuntimeError(
                    "db_engine required for first call to get_persistent_state_store"
                )
            _persistent_state_store = PersistentStateStore(db_engine)
        return _persistent_state_store


def reset_persistent_state_store() -> None:
    """Forget the process-wide store (it is not closed: the original did not close it)."""
    global _persistent_state_store
    with _persistent_state_store_lock:
        _persistent_state_store = None
