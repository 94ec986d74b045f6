"""Pydantic models of the event, binding and runner descriptor fields that state needs.

Hosts usually have their own models for these; every statekit function that takes an
event, binding or descriptor reads only the attributes declared here, so any object with
those attributes works (see the ``*Like`` protocols in :mod:`statekit.scope`). Every
default is the original models' (``tests/test_compat.py`` checks each), because the
defaults enter the scope keys: another default would be another key, and stored state
would not be found.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from statekit.scope import DEFAULT_STATE_SCOPES


class ActorContext(BaseModel):
    """Who caused the event; ``actor_id`` identifies the actor scope."""

    model_config = ConfigDict(extra="allow")

    actor_type: str = "user"
    actor_id: str | None = None


class SubjectContext(BaseModel):
    """What the event is about; ``subject_id`` identifies the subject scope."""

    model_config = ConfigDict(extra="allow")

    subject_type: str = "unknown"
    subject_id: str | None = None


class AgentEventEnvelope(BaseModel):
    """The fields of an incoming event that scope keys are built from."""

    model_config = ConfigDict(extra="allow")

    bot_id: str | None = None
    workspace_id: str | None = None
    conversation_id: str | None = None
    thread_id: str | None = None
    actor: ActorContext | None = None
    subject: SubjectContext | None = None


class BindingScope(BaseModel):
    """Where a binding applies; used for the binding identity when it has no id.

    ``scope_type`` defaults to ``"pipeline"``, as in the original models: a binding
    without an id and with scope id ``p1`` has identity ``pipeline:p1``.
    """

    model_config = ConfigDict(extra="allow")

    scope_type: str | None = "pipeline"
    scope_id: str | None = None


class StatePolicy(BaseModel):
    """Whether a binding may keep state, and in which scopes."""

    model_config = ConfigDict(extra="allow")

    enable_state: bool = True
    state_scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_STATE_SCOPES))


class AgentBinding(BaseModel):
    """A runner bound to a place; its identity isolates state between bindings."""

    model_config = ConfigDict(extra="allow")

    binding_id: str | None = None
    scope: BindingScope | None = None
    state_policy: StatePolicy = Field(default_factory=StatePolicy)


class RunnerDescriptor(BaseModel):
    """The runner whose state this is; ``id`` is part of every scope key."""

    model_config = ConfigDict(extra="allow")

    id: str
