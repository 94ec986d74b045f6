"""statekit: host-owned state of agent runners, over Redis, PostgreSQL, SQLite or memory."""

from statekit.backends.base import (
    NEVER,
    BackendInfo,
    Capability,
    ExpiringBackend,
    ScopeContext,
    StateBackend,
    StateEntry,
    StateWrite,
    SweepResult,
    VersionedBackend,
)
from statekit.backends.identity import ErasingBackend, ErasureResult, IdentityFilter, ScopeInfo
from statekit.backends.memory import MemoryBackend
from statekit.connection import connect
from statekit.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    InvalidFilterError,
    StateBackendError,
    StatekitError,
    StoreClosedError,
    UnsupportedCapabilityError,
    VersionConflictError,
)
from statekit.expiry import ExpiryPolicy
from statekit.models import (
    ActorContext,
    AgentBinding,
    AgentEventEnvelope,
    BindingScope,
    RunnerDescriptor,
    StatePolicy,
    SubjectContext,
)
from statekit.scope import (
    STATE_KEY_ALIASES,
    VALID_STATE_SCOPES,
    build_state_context,
    build_state_scope_key,
    build_state_scope_keys,
    get_binding_identity,
    normalize_state_key,
)
from statekit.settings import DEFAULT_URL, StatekitSettings
from statekit.store import (
    ImportResult,
    StateStore,
    StateUpdate,
    get_state_store,
    reset_state_store,
)
from statekit.telemetry import Telemetry
from statekit.url import BackendURL
from statekit.validation import MAX_STATE_KEY_LENGTH, MAX_VALUE_DEPTH, MAX_VALUE_JSON_BYTES

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "MAX_STATE_KEY_LENGTH",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_JSON_BYTES",
    "NEVER",
    "STATE_KEY_ALIASES",
    "VALID_STATE_SCOPES",
    "ActorContext",
    "AgentBinding",
    "AgentEventEnvelope",
    "BackendInfo",
    "BackendTimeoutError",
    "BackendURL",
    "BackendUnavailableError",
    "BindingScope",
    "Capability",
    "ConfigurationError",
    "ErasingBackend",
    "ErasureResult",
    "ExpiringBackend",
    "ExpiryPolicy",
    "IdentityFilter",
    "ImportResult",
    "InvalidFilterError",
    "MemoryBackend",
    "RunnerDescriptor",
    "ScopeContext",
    "ScopeInfo",
    "StateBackend",
    "StateBackendError",
    "StateEntry",
    "StatePolicy",
    "StateStore",
    "StateUpdate",
    "StateWrite",
    "StatekitError",
    "StatekitSettings",
    "StoreClosedError",
    "SubjectContext",
    "SweepResult",
    "Telemetry",
    "UnsupportedCapabilityError",
    "VersionConflictError",
    "VersionedBackend",
    "__version__",
    "build_state_context",
    "build_state_scope_key",
    "build_state_scope_keys",
    "connect",
    "get_binding_identity",
    "get_state_store",
    "normalize_state_key",
    "reset_state_store",
]
