"""Events, bindings and descriptors for tests, unique per call so that suites running on
a shared server never see each other's scopes; and the calls most tests make."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from statekit.models import (
    ActorContext,
    AgentBinding,
    AgentEventEnvelope,
    RunnerDescriptor,
    StatePolicy,
    SubjectContext,
)
from statekit.scope import VALID_STATE_SCOPES, build_state_scope_key

if TYPE_CHECKING:
    from statekit.backends.base import StateEntry
    from statekit.store import StateStore


@dataclass
class Identity:
    """One runner + binding + event, with every scope enabled unless told otherwise."""

    event: AgentEventEnvelope
    binding: AgentBinding
    descriptor: RunnerDescriptor
    scopes: tuple[str, ...] = field(default=VALID_STATE_SCOPES)

    def scope_key(self, scope: str = "conversation") -> str:
        key = build_state_scope_key(scope, self.event, self.binding, self.descriptor)
        assert key is not None, f"identity has no {scope} scope"
        return key

    @property
    def binding_identity(self) -> str:
        return str(self.binding.binding_id)

    @property
    def runner_id(self) -> str:
        return self.descriptor.id


def new_identity(
    scopes: tuple[str, ...] = VALID_STATE_SCOPES,
    *,
    enable_state: bool = True,
    tag: str | None = None,
    **event: str | None,
) -> Identity:
    """A fresh identity: a random runner id keeps its scope keys unique on shared servers.

    With ``tag`` instead the ids are made of it: every call (every process) given the same
    tag gets the same identity, and so the same scopes."""
    tag = uuid.uuid4().hex[:12] if tag is None else tag
    fields: dict[str, str | None] = {
        "bot_id": "bot-1",
        "workspace_id": "ws-1",
        "conversation_id": f"conv-{tag}",
        "thread_id": None,
        "actor_id": f"user-{tag}",
        "subject_id": f"subject-{tag}",
    }
    fields.update(event)
    return Identity(
        event=AgentEventEnvelope(
            bot_id=fields["bot_id"],
            workspace_id=fields["workspace_id"],
            conversation_id=fields["conversation_id"],
            thread_id=fields["thread_id"],
            actor=ActorContext(actor_type="user", actor_id=fields["actor_id"]),
            subject=SubjectContext(subject_type="ticket", subject_id=fields["subject_id"]),
        ),
        binding=AgentBinding(
            binding_id=f"binding-{tag}",
            state_policy=StatePolicy(enable_state=enable_state, state_scopes=list(scopes)),
        ),
        descriptor=RunnerDescriptor(id=f"runner-{tag}"),
        scopes=scopes,
    )


async def put(
    store: StateStore,
    ident: Identity,
    key: Any,
    value: Any,
    scope: str = "conversation",
    *,
    expected_version: int | None = None,
) -> tuple[bool, str | None]:
    """``state_set`` of one value in ``ident``'s ``scope``, as its runner and binding;
    conditional on ``expected_version`` when given."""
    return await store.state_set(
        ident.scope_key(scope),
        key,
        value,
        ident.runner_id,
        ident.binding_identity,
        scope,
        expected_version=expected_version,
    )


async def put_many(
    store: StateStore, ident: Identity, entries: Mapping[str, Any], scope: str = "conversation"
) -> list[tuple[bool, str | None]]:
    """``entries`` (key to value) written together into ``ident``'s ``scope`` with
    ``apply_updates_from_event``, as its event, binding and runner; each one's result."""
    updates = [(scope, key, value) for key, value in entries.items()]
    return await store.apply_updates_from_event(
        ident.event, ident.binding, ident.descriptor, updates
    )


async def try_increment(
    store: StateStore, ident: Identity, key: str = "counter"
) -> tuple[bool, str | None]:
    """One read-modify-write increment of ``key`` in ``ident``'s conversation scope (a
    missing key counts as 0): its value and version read, then a set conditional on that
    version. ``(False, "Version conflict ...")`` when another writer came in between: the
    caller retries."""
    value, version = await store.state_get_versioned(ident.scope_key(), key)
    return await put(store, ident, key, (value or 0) + 1, expected_version=version)


async def scope_entries(store: StateStore, scope_key: str) -> dict[str, StateEntry]:
    """The exported entries of one scope, by state key."""
    return {e.state_key: e async for e in store.export() if e.scope_key == scope_key}
