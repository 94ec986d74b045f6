"""Finding scopes by who they belong to: the filter every backend applies the same way.

A scope's identity is the set of fields hashed into its key (see
:func:`statekit.scope.scope_identity`): ``runner_id``, ``binding_identity``, ``bot_id`` and
``workspace_id`` for every scope, plus ``conversation_id``/``thread_id`` for a
conversation, ``actor_type``/``actor_id`` for an actor and ``subject_type``/``subject_id``
for a subject. The stored :class:`~statekit.backends.base.ScopeContext` of a scope holds
them. A filter matches a scope when every field it names is one of the scope's identity
fields and equal to it exactly: no prefix, no case folding, no pattern. A writer's
incidental context (an actor scope's ``conversation_id``) is never matched, so erasing by
``conversation_id`` never touches the actor scopes of the people in that conversation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from statekit.backends.base import ScopeContext, StateBackend, StateEntry

#: The identity fields of every scope name, in their order.
IDENTITY_FIELDS: Mapping[str, tuple[str, ...]] = {
    "conversation": (
        "runner_id",
        "binding_identity",
        "bot_id",
        "workspace_id",
        "conversation_id",
        "thread_id",
    ),
    "actor": ("runner_id", "binding_identity", "bot_id", "workspace_id", "actor_type", "actor_id"),
    "subject": (
        "runner_id",
        "binding_identity",
        "bot_id",
        "workspace_id",
        "subject_type",
        "subject_id",
    ),
    "runner": ("runner_id", "binding_identity", "bot_id", "workspace_id"),
}

#: Every field a filter may name (besides ``scope``).
FILTER_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(f for fs in IDENTITY_FIELDS.values() for f in fs)
)


@dataclass(frozen=True, slots=True)
class IdentityFilter:
    """Which scopes an erasure or an access request is about.

    ``fields`` maps identity field names to the exact text to match (at least one);
    ``scope`` narrows to one scope name. Built by the store from validated input; a
    backend only applies it.
    """

    fields: Mapping[str, str]
    scope: str | None = None

    def scope_names(self) -> tuple[str, ...]:
        """The scope names whose identity has every filtered field (the only ones that
        can match): ``conversation_id`` alone names conversations only."""
        names = IDENTITY_FIELDS if self.scope is None else (self.scope,)
        return tuple(n for n in names if all(f in IDENTITY_FIELDS[n] for f in self.fields))

    def matches(self, context: ScopeContext) -> bool:
        """Whether a scope with this stored context is one the filter names."""
        if context.scope not in self.scope_names():
            return False
        return all(getattr(context, name) == value for name, value in self.fields.items())


@dataclass(frozen=True, slots=True)
class ScopeInfo:
    """One scope a filter found: its key, name, stored context and entry count."""

    scope_key: str
    scope: str
    context: ScopeContext
    entries: int


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """What an erasure removed (or, in a dry run, would remove)."""

    scopes: int = 0
    entries: int = 0
    #: Filled by the store's ``erase``: counts per scope name.
    by_scope: Mapping[str, int] = field(default_factory=dict)


class ErasingBackend(StateBackend, Protocol):
    """A backend that declares :attr:`Capability.ERASURE`: scopes found and erased by
    identity, at a cost proportional to what matches (an index on the identity), not to
    the store.

    Expired scopes are absent here as everywhere: never found, never counted.
    """

    def find_scopes(self, identity: IdentityFilter) -> AsyncIterator[ScopeInfo]:
        """Every live scope ``identity`` matches, streamed in batches (bounded memory),
        any order, each once. A scope that exists for the whole iteration is found."""
        ...

    async def scope_entries(self, scope_key: str) -> list[StateEntry]:
        """Every entry of one live scope with its context and timestamps (an access
        request's export); ``[]`` when absent or expired."""
        ...

    async def erase(self, identity: IdentityFilter) -> ErasureResult:
        """Remove every entry of every scope ``identity`` matches, with the scope's
        bookkeeping (context, listing index, deadline, identity index entries).

        Each scope goes in one atomic step (or one transaction per batch of scopes):
        never half-erased. Nothing written before the call started survives it; a write
        acknowledged after it returned does. Index entries of scopes that no longer exist
        are removed on the way. ``by_scope`` may be left empty (the store fills it).
        """
        ...
