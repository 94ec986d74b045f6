"""statekit: host-owned state of agent runners, over Redis, PostgreSQL, SQLite or memory.

Every public name is importable from here (``from statekit import connect``,
``statekit.StateStore``), but a name's module is imported on first use (PEP 562): a
process that needs only part of statekit, like a ``statekit get`` on the command line,
does not pay for the rest (pydantic-settings, the store, OpenTelemetry...). The imports
under ``TYPE_CHECKING`` are the same names for type checkers and editors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from statekit.environment import DEFAULT_URL
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
    from statekit.settings import StatekitSettings
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

#: Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    "NEVER": "statekit.backends.base",
    "BackendInfo": "statekit.backends.base",
    "Capability": "statekit.backends.base",
    "ExpiringBackend": "statekit.backends.base",
    "ScopeContext": "statekit.backends.base",
    "StateBackend": "statekit.backends.base",
    "StateEntry": "statekit.backends.base",
    "StateWrite": "statekit.backends.base",
    "SweepResult": "statekit.backends.base",
    "VersionedBackend": "statekit.backends.base",
    "ErasingBackend": "statekit.backends.identity",
    "ErasureResult": "statekit.backends.identity",
    "IdentityFilter": "statekit.backends.identity",
    "ScopeInfo": "statekit.backends.identity",
    "MemoryBackend": "statekit.backends.memory",
    "connect": "statekit.connection",
    "BackendTimeoutError": "statekit.errors",
    "BackendUnavailableError": "statekit.errors",
    "ConfigurationError": "statekit.errors",
    "InvalidFilterError": "statekit.errors",
    "StateBackendError": "statekit.errors",
    "StatekitError": "statekit.errors",
    "StoreClosedError": "statekit.errors",
    "UnsupportedCapabilityError": "statekit.errors",
    "VersionConflictError": "statekit.errors",
    "ExpiryPolicy": "statekit.expiry",
    "ActorContext": "statekit.models",
    "AgentBinding": "statekit.models",
    "AgentEventEnvelope": "statekit.models",
    "BindingScope": "statekit.models",
    "RunnerDescriptor": "statekit.models",
    "StatePolicy": "statekit.models",
    "SubjectContext": "statekit.models",
    "STATE_KEY_ALIASES": "statekit.scope",
    "VALID_STATE_SCOPES": "statekit.scope",
    "build_state_context": "statekit.scope",
    "build_state_scope_key": "statekit.scope",
    "build_state_scope_keys": "statekit.scope",
    "get_binding_identity": "statekit.scope",
    "normalize_state_key": "statekit.scope",
    "DEFAULT_URL": "statekit.environment",
    "StatekitSettings": "statekit.settings",
    "ImportResult": "statekit.store",
    "StateStore": "statekit.store",
    "StateUpdate": "statekit.store",
    "get_state_store": "statekit.store",
    "reset_state_store": "statekit.store",
    "Telemetry": "statekit.telemetry",
    "BackendURL": "statekit.url",
    "MAX_STATE_KEY_LENGTH": "statekit.validation",
    "MAX_VALUE_DEPTH": "statekit.validation",
    "MAX_VALUE_JSON_BYTES": "statekit.validation",
}


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


if not TYPE_CHECKING:  # type checkers see the imports above, and flag any other name

    def __getattr__(name: str) -> Any:
        """Import the module of a public name on first access, then keep the name here."""
        try:
            module = _EXPORTS[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        # The public names and the submodules imported so far, not this module's own
        # imports (``importlib``, ``TYPE_CHECKING``...).
        return sorted({*__all__, *(name for name in globals() if name not in _OWN_IMPORTS)})


_OWN_IMPORTS = frozenset({"annotations", "importlib", "TYPE_CHECKING", "Any"})
