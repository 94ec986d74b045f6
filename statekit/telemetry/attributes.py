"""The names statekit's spans and metrics carry, and the attributes of one backend.

Attributes follow the OpenTelemetry database semantic conventions; statekit's own are
under ``statekit.``. What an attribute may hold is fixed here, once: a backend's engine,
database name, host and port; a scope *name* (one of four); a count; a refusal's class.
Never a value, an id, a state key, a scope's key (unless the host opts in), a URL or a
password: the privacy tests check every attribute recorded against that rule.
"""

from __future__ import annotations

from statekit.scope import VALID_STATE_SCOPES

__all__ = [
    "BATCH_KIND",
    "BATCH_SIZE",
    "COALESCED_SIZE",
    "DB_NAMESPACE",
    "DB_OPERATION",
    "DB_SYSTEM",
    "ERROR_TYPE",
    "POOL_NAME",
    "REFUSAL_REASON",
    "SCOPE",
    "SCOPE_KEY",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "STATE",
    "backend_attributes",
    "scope_name",
]

DB_SYSTEM = "db.system.name"
DB_OPERATION = "db.operation.name"
DB_NAMESPACE = "db.namespace"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"

#: The scope name of the operation's scope key (``conversation``, ``actor``, ...).
SCOPE = "statekit.scope"
#: The scope key itself: only with ``Telemetry(scope_keys=True)`` (it identifies a person).
SCOPE_KEY = "statekit.scope_key"
#: Updates in one ``apply_updates_from_event`` call.
BATCH_SIZE = "statekit.batch.size"
#: Callers whose operations went in one round trip (pipelined or coalesced).
COALESCED_SIZE = "statekit.coalesced.size"
#: Which batching made a :data:`COALESCED_SIZE` measurement: ``pipeline`` or ``coalesced``.
BATCH_KIND = "statekit.batch.kind"
#: A refusal's class, one of :data:`statekit.validation.REFUSAL_REASONS`.
REFUSAL_REASON = "statekit.refusal.reason"

_ALLOWED_KEYS = frozenset({DB_SYSTEM, DB_NAMESPACE, SERVER_ADDRESS, SERVER_PORT})
_SCOPES = frozenset(VALID_STATE_SCOPES)


def backend_attributes(backend: object) -> dict[str, str | int]:
    """The attributes every span and measurement of ``backend`` carries.

    A built-in backend names its server (``telemetry_attributes``); any other backend,
    memory included, is ``db.system.name = "other"``. Only the conventional keys are
    kept, whatever a third-party backend returns.
    """
    given = getattr(backend, "telemetry_attributes", None)
    if not isinstance(given, dict):
        return {DB_SYSTEM: "other"}
    kept = {
        key: value
        for key, value in given.items()
        if key in _ALLOWED_KEYS and isinstance(value, str | int)
    }
    kept.setdefault(DB_SYSTEM, "other")
    return kept


def scope_name(scope_key: object) -> str | None:
    """The scope name a statekit-built scope key starts with (``actor:v2:<digest>``),
    or ``None`` for a host's own key or anything else."""
    if not isinstance(scope_key, str):
        return None
    name = scope_key.partition(":")[0]
    return name if name in _SCOPES else None
