"""Naming a scope on the command line: by its scope key, or by the identity it hashes.

``--scope-key conversation:v2:<sha256>`` names a scope directly; ``--scope conversation
--runner R --binding B --conversation C ...`` builds the same key with
:func:`statekit.build_state_scope_key`, exactly as a host would for an event.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

import typer

from statekit.backends.base import OPTIONAL_CONTEXT_FIELDS, ScopeContext
from statekit.cli.runtime import ExitCode, fail
from statekit.models import (
    ActorContext,
    AgentBinding,
    AgentEventEnvelope,
    RunnerDescriptor,
    StatePolicy,
    SubjectContext,
)
from statekit.scope import VALID_STATE_SCOPES, build_state_scope_key, event_context_values

F = TypeVar("F", bound=Callable[..., Any])
UNKNOWN_BINDING = "unknown_binding"
_PANEL = "Scope"


@dataclass(frozen=True, slots=True)
class ScopeAddress:
    """Everything the scope options said; turned into a key or a snapshot request."""

    scope_key: str | None = None
    scope: str | None = None
    runner: str | None = None
    binding: str | None = None
    bot: str | None = None
    workspace: str | None = None
    conversation: str | None = None
    thread: str | None = None
    actor: str | None = None
    actor_type: str | None = None
    subject: str | None = None
    subject_type: str | None = None

    def event(self) -> AgentEventEnvelope:
        """The event a host would have: an actor or subject only when its id is given."""
        actor = subject = None
        if self.actor:
            actor = ActorContext(actor_type=self.actor_type or "user", actor_id=self.actor)
        if self.subject:
            subject = SubjectContext(
                subject_type=self.subject_type or "unknown", subject_id=self.subject
            )
        return AgentEventEnvelope(
            bot_id=self.bot,
            workspace_id=self.workspace,
            conversation_id=self.conversation,
            thread_id=self.thread,
            actor=actor,
            subject=subject,
        )

    def binding_model(self, scopes: Sequence[str] = VALID_STATE_SCOPES) -> AgentBinding:
        # Every scope enabled by default: the command line is the operator, not a runner.
        policy = StatePolicy(state_scopes=list(scopes))
        return AgentBinding(binding_id=self.binding or UNKNOWN_BINDING, state_policy=policy)

    def snapshot_of(self, scope: str) -> tuple[AgentEventEnvelope, AgentBinding, RunnerDescriptor]:
        """What a host passes for a snapshot of ``scope`` alone (the others disabled)."""
        return self.event(), self.binding_model([scope]), self.descriptor()

    def descriptor(self) -> RunnerDescriptor:
        if not self.runner:
            fail("--runner is required to build a scope key from identity", ExitCode.USAGE)
        return RunnerDescriptor(id=self.runner)

    def resolved_scope(self) -> str:
        """The scope name, from ``--scope`` or the scope key's ``{scope}:v2:`` prefix."""
        from_key = None
        if self.scope_key:
            head = self.scope_key.split(":", 1)[0]
            from_key = head if head in VALID_STATE_SCOPES else None
        if self.scope and from_key and self.scope != from_key:
            fail(f"--scope {self.scope} does not match the scope key", ExitCode.USAGE)
        scope = self.scope or from_key
        if scope is None:
            fail("give --scope (conversation, actor, subject or runner)", ExitCode.USAGE)
        if scope not in VALID_STATE_SCOPES:
            fail(f"invalid --scope {scope!r}: use {', '.join(VALID_STATE_SCOPES)}", ExitCode.USAGE)
        return scope

    def key(self) -> str:
        """The scope key, given or built; a usage error when the identity is incomplete."""
        if self.scope_key:
            return self.scope_key
        if not self.scope:
            fail("name a scope with --scope-key, or with --scope and --runner", ExitCode.USAGE)
        scope = self.resolved_scope()
        key = build_state_scope_key(scope, self.event(), self.binding_model(), self.descriptor())
        if key is None:
            needed = {"conversation": "--conversation", "actor": "--actor", "subject": "--subject"}
            fail(f"the {scope} scope needs {needed.get(scope, 'an id')}", ExitCode.USAGE)
        return key

    def context(self) -> ScopeContext:
        """What ``set`` stores with a new entry (who the scope belongs to): the context
        :meth:`StateStore.apply_update_from_event` would store for :meth:`event`."""
        if not self.runner:
            fail("set needs --runner (stored with the entry)", ExitCode.USAGE)
        fields = zip(OPTIONAL_CONTEXT_FIELDS, event_context_values(self.event()), strict=True)
        return ScopeContext.from_mapping(
            self.runner, self.binding or UNKNOWN_BINDING, self.resolved_scope(), dict(fields)
        )


def panel_option(*names: str, help: str, panel: str = _PANEL) -> Any:
    """A ``str | None`` option shown under ``panel`` in ``--help``."""
    return typer.Option(*names, help=help, rich_help_panel=panel)


_SCOPE_OPTIONS: dict[str, Any] = {
    "scope_key": panel_option("--scope-key", "-k", help="The scope key, as stored."),
    "scope": panel_option("--scope", help="conversation, actor, subject or runner."),
    "runner": panel_option("--runner", help="Runner id."),
    "binding": panel_option("--binding", help=f"Binding identity (default: {UNKNOWN_BINDING})."),
    "bot": panel_option("--bot", help="Bot id."),
    "workspace": panel_option("--workspace", help="Workspace id."),
    "conversation": panel_option("--conversation", help="Conversation id."),
    "thread": panel_option("--thread", help="Thread id."),
    "actor": panel_option("--actor", help="Actor id."),
    "actor_type": panel_option("--actor-type", help="Actor type (default: user)."),
    "subject": panel_option("--subject", help="Subject id."),
    "subject_type": panel_option("--subject-type", help="Subject type (default: unknown)."),
}


def option_group(
    options: Mapping[str, Any], build: Callable[..., Any], param: str
) -> Callable[[F], F]:
    """A decorator giving a command ``options`` (parameter name to ``typer.Option``, each
    a ``str | None`` defaulting to ``None``); the command receives them built into one
    value, ``build(**given)``, as its keyword argument ``param``."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name != param]
        added = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[str | None, option],
            )
            for name, option in options.items()
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            fields = {name: kwargs.pop(name, None) for name in options}
            return command(*args, **{param: build(**fields)}, **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__
        return cast(F, wrapper)

    return decorate


#: Give a command the scope options; it receives them as ``address: ScopeAddress``.
scope_options = option_group(_SCOPE_OPTIONS, ScopeAddress, "address")
