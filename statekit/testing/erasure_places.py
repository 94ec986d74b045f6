"""Scopes for the erasure contract, built from identity fields, and what it checks after a
find or an erase. Backend-level calls, no store in between.

Every value a test writes starts with a tag of its own (``"3fa2c1d0.u-1"``), so that
filters never reach the scopes of another test or another hypothesis example sharing
the backend, whichever field they name.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from statekit.backends.base import (
    CONTEXT_FIELDS,
    Capability,
    ScopeContext,
    StateBackend,
    StateEntry,
    StateWrite,
)
from statekit.backends.identity import (
    IDENTITY_FIELDS,
    ErasingBackend,
    IdentityFilter,
    ScopeInfo,
)
from statekit.models import (
    ActorContext,
    AgentBinding,
    AgentEventEnvelope,
    RunnerDescriptor,
    SubjectContext,
)
from statekit.scope import build_state_scope_key

#: The context fields a place is given (``scope`` is the place's own).
FIELDS = tuple(name for name in CONTEXT_FIELDS if name != "scope")


def new_tag() -> str:
    """A fresh prefix for one test's values."""
    return uuid.uuid4().hex[:8]


def base_fields(tag: str) -> dict[str, str]:
    """A value for every context field, each made of ``tag`` and the field's name."""
    return {name: f"{tag}.{name}" for name in FIELDS}


@dataclass(frozen=True, slots=True)
class Place:
    """One scope: its name, its key (as the store derives it from the identity) and the
    context its writes carry, identity fields and incidental ones alike."""

    scope: str
    key: str
    context: ScopeContext

    @classmethod
    def of(cls, scope: str, fields: Mapping[str, str]) -> Place:
        """The ``scope`` scope of a writer whose context is ``fields`` (every name of
        :data:`FIELDS`; the scope's identity fields must be set)."""
        event = AgentEventEnvelope(
            bot_id=fields["bot_id"],
            workspace_id=fields["workspace_id"],
            conversation_id=fields["conversation_id"],
            thread_id=fields["thread_id"],
            actor=ActorContext(actor_type=fields["actor_type"], actor_id=fields["actor_id"]),
            subject=SubjectContext(
                subject_type=fields["subject_type"], subject_id=fields["subject_id"]
            ),
        )
        binding = AgentBinding(binding_id=fields["binding_identity"])
        key = build_state_scope_key(scope, event, binding, RunnerDescriptor(id=fields["runner_id"]))
        assert key is not None, f"no {scope} identity in {fields}"
        context = ScopeContext(scope=scope, **fields)
        return cls(scope, key, context)

    @property
    def identity(self) -> dict[str, str | None]:
        """The fields hashed into this scope's key."""
        return {name: getattr(self.context, name) for name in IDENTITY_FIELDS[self.scope]}

    def writes(self, count: int, ttl: float | None = None, first: int = 0) -> list[StateWrite]:
        """``count`` entries, each value naming this scope and its own key."""
        return [
            StateWrite(self.key, f"k{n}", json.dumps([self.key, n]), self.context, ttl)
            for n in range(first, first + count)
        ]

    def matched_by(self, identity: IdentityFilter) -> bool:
        """The rule, written out apart from :meth:`IdentityFilter.matches`: the scope name
        fits, and every filtered field is one of this scope's identity fields and equal."""
        own = self.identity
        return (identity.scope in (None, self.scope)) and all(
            name in own and own[name] == value for name, value in identity.fields.items()
        )


def places(scopes: Iterable[str], fields: Mapping[str, str]) -> list[Place]:
    """One place per scope name, all with the context ``fields``."""
    return [Place.of(scope, fields) for scope in scopes]


def as_erasing(backend: StateBackend) -> ErasingBackend:
    """``backend`` as an :class:`ErasingBackend` (the caller checked the capability)."""
    return cast(ErasingBackend, backend)


async def fill(
    backend: StateBackend, where: Iterable[Place], count: int = 2, ttl: float | None = None
) -> None:
    """``count`` entries in each place, in one ``set_many``; ``ttl`` only on a backend
    with :attr:`Capability.EXPIRY`."""
    assert ttl is None or Capability.EXPIRY in backend.capabilities
    await backend.set_many([write for place in where for write in place.writes(count, ttl)])


async def stored(backend: StateBackend) -> dict[tuple[str, str], StateEntry]:
    """Every entry the backend exports, by (scope key, state key)."""
    return {(e.scope_key, e.state_key): e async for e in backend.iter_entries()}


async def found(backend: ErasingBackend, identity: IdentityFilter) -> dict[str, ScopeInfo]:
    """What ``find_scopes`` yields, by scope key; each scope must come once."""
    result: dict[str, ScopeInfo] = {}
    async for info in backend.find_scopes(identity):
        assert info.scope_key not in result, f"{info.scope_key} found twice"
        result[info.scope_key] = info
    return result


async def check_find_and_erase(
    backend: ErasingBackend, identity: IdentityFilter, candidates: Iterable[Place]
) -> set[str]:
    """Find, erase and check against the rule: exactly the matching ``candidates`` are
    found (name, identity and entry count as stored) and erased (counts exact), and every
    other entry of the backend is left as it was, to the byte and timestamp. Returns the
    keys erased."""
    unique = {place.key: place for place in candidates}
    expected = {key for key, place in unique.items() if place.matched_by(identity)}
    before = await stored(backend)
    entries = {key: sum(1 for s, _ in before if s == key) for key in expected}
    hits = await found(backend, identity)
    assert set(hits) == expected, _difference("found", set(hits), expected)
    for key, info in hits.items():
        place = unique[key]
        assert (info.scope, info.context.scope) == (place.scope, place.scope)
        assert {name: getattr(info.context, name) for name in place.identity} == place.identity
        assert info.entries == entries[key], f"{key}: {info.entries} entries, not {entries[key]}"
    result = await backend.erase(identity)
    assert (result.scopes, result.entries) == (len(expected), sum(entries.values()))
    after = await stored(backend)
    assert after == {k: e for k, e in before.items() if k[0] not in expected}
    assert await found(backend, identity) == {}
    return expected


def _difference(what: str, got: set[str], expected: set[str]) -> str:
    return f"{what}: extra {sorted(got - expected)}, missing {sorted(expected - got)}"
