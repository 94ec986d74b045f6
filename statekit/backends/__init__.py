"""Backend adapters. Each engine lives in its own module, imported only when used."""

from statekit.backends.base import (
    Capability,
    ScopeContext,
    StateBackend,
    StateEntry,
    StateWrite,
    VersionedBackend,
)

__all__ = [
    "Capability",
    "ScopeContext",
    "StateBackend",
    "StateEntry",
    "StateWrite",
    "VersionedBackend",
]
