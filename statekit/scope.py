"""Scope keys, binding identity and key aliases: the identity rules every backend shares.

The scope key format is the one existing deployments already store (``"{scope}:v2:"`` +
SHA-256 of a canonical JSON identity), so rows written by the original store keep working.
Hashing makes keys opaque and collision-free whatever the ids contain (``:``, ``/``,
quotes, unicode): no separator can be forged.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from operator import attrgetter, itemgetter
from typing import Any, Protocol, cast

from statekit.backends.base import OPTIONAL_CONTEXT_FIELDS

VALID_STATE_SCOPES: tuple[str, ...] = ("conversation", "actor", "subject", "runner")
DEFAULT_STATE_SCOPES: tuple[str, ...] = ("conversation", "actor")
STATE_KEY_ALIASES: dict[str, str] = {"conversation_id": "external.conversation_id"}
SCOPE_KEY_VERSION = 2


class ActorLike(Protocol):
    actor_type: str | None
    actor_id: str | None


class SubjectLike(Protocol):
    subject_type: str | None
    subject_id: str | None


class EventLike(Protocol):
    """Any event object with these attributes works (duck typing)."""

    @property
    def bot_id(self) -> str | None: ...
    @property
    def workspace_id(self) -> str | None: ...
    @property
    def conversation_id(self) -> str | None: ...
    @property
    def thread_id(self) -> str | None: ...
    @property
    def actor(self) -> Any: ...
    @property
    def subject(self) -> Any: ...


class BindingLike(Protocol):
    """Any binding object with these attributes works (duck typing)."""

    @property
    def binding_id(self) -> str | None: ...
    @property
    def scope(self) -> Any: ...
    @property
    def state_policy(self) -> Any: ...


class DescriptorLike(Protocol):
    """Any runner descriptor with an ``id`` works (duck typing)."""

    @property
    def id(self) -> str: ...


def normalize_state_key(key: str) -> str:
    """Map an accepted alias (``conversation_id``) to its stored key."""
    return STATE_KEY_ALIASES.get(key, key)


def get_binding_identity(binding: BindingLike) -> str:
    """``binding_id``, else ``"{scope_type}:{scope_id}"``, else ``"unknown_binding"``."""
    binding_id = getattr(binding, "binding_id", None)
    if binding_id:
        return binding_id if type(binding_id) is str else _text("binding_identity", binding_id)
    scope = getattr(binding, "scope", None)
    scope_type = getattr(scope, "scope_type", None) if scope is not None else None
    scope_id = getattr(scope, "scope_id", None) if scope is not None else None
    if scope_type and scope_id:
        return f"{scope_type}:{scope_id}"
    return "unknown_binding"


def _picker(*names: str) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    get = itemgetter(*(OPTIONAL_CONTEXT_FIELDS.index(name) for name in names))
    return cast(Callable[[tuple[Any, ...]], tuple[Any, ...]], get)


#: Per scope name, the ids of :func:`event_context_values` its key hashes, in order:
#: the bot and workspace, then the scope's own kind and id (none for the runner scope).
_SCOPE_IDS = {
    "conversation": _picker("bot_id", "workspace_id", "conversation_id", "thread_id"),
    "actor": _picker("bot_id", "workspace_id", "actor_type", "actor_id"),
    "subject": _picker("bot_id", "workspace_id", "subject_type", "subject_id"),
    "runner": _picker("bot_id", "workspace_id"),
}


def scope_identity(
    scope: str, event: EventLike, binding: BindingLike, descriptor: DescriptorLike
) -> dict[str, Any] | None:
    """The identity hashed into a scope key, or ``None`` when the scope's id is missing."""
    if scope not in VALID_STATE_SCOPES:
        return None
    ids = (scope, descriptor.id, get_binding_identity(binding))
    return _identity(ids + _SCOPE_IDS[scope](event_context_values(event)))


def build_state_scope_key(
    scope: str, event: EventLike, binding: BindingLike, descriptor: DescriptorLike
) -> str | None:
    """``"{scope}:v2:<sha256>"`` of the scope's canonical identity, or ``None`` without one.

    Ids are hashed as JSON values, so one JSON cannot represent (an arbitrary object, an
    int past Python's digit limit for int-to-str conversion) raises
    :class:`~statekit.validation.Refusal` (a ``ValueError``) naming the field: the store
    reports it as a refused write and reads such a scope as empty.
    """
    if scope not in VALID_STATE_SCOPES:
        return None
    runner_id, binding_identity = descriptor.id, get_binding_identity(binding)
    return scope_key_of(scope, runner_id, binding_identity, event_context_values(event))


def scope_key_of(
    scope: str, runner_id: Any, binding_identity: Any, ids: tuple[Any, ...]
) -> str | None:
    """:func:`build_state_scope_key` from values already read: the runner's id, the
    binding's identity and the event's :func:`event_context_values`, so a caller that
    needs them too reads the event once."""
    if scope not in VALID_STATE_SCOPES:
        return None
    values = (scope, runner_id, binding_identity, *_SCOPE_IDS[scope](ids))
    # Ids are text almost always: then the key is memoised, as a runner's events keep
    # naming the same few scopes. Other values (numbers, booleans, ...) could compare
    # equal while encoding differently (1, 1.0, True), so they are hashed every time.
    for value in values:
        if value is not None and type(value) is not str:
            return _key_of(values)
    return _cached_key_of(values)


def _identity(values: tuple[Any, ...]) -> dict[str, Any] | None:
    """The identity of ``(scope, runner_id, binding_identity, bot_id, workspace_id, ...)``
    and the scope's own two ids (:data:`_SCOPE_IDS`); ``None`` when its id is missing."""
    scope, runner_id, binding_identity, bot_id, workspace_id, *own = values
    identity: dict[str, Any] = {
        "version": SCOPE_KEY_VERSION,
        "scope": scope,
        "runner_id": runner_id,
        "binding_identity": binding_identity,
        "bot_id": bot_id,
        "workspace_id": workspace_id,
    }
    if scope == "conversation":
        conversation_id, thread_id = own
        if not conversation_id:
            return None
        identity["conversation_id"], identity["thread_id"] = conversation_id, thread_id
    elif scope == "actor":
        actor_type, actor_id = own
        if not actor_id:
            return None
        identity["actor_type"], identity["actor_id"] = actor_type or "user", actor_id
    elif scope == "subject":
        subject_type, subject_id = own
        if not subject_id:
            return None
        identity["subject_type"], identity["subject_id"] = subject_type or "unknown", subject_id
    return identity


def _scope_key(identity: dict[str, Any]) -> str:
    try:
        canonical = _canonical(identity)
    except (TypeError, ValueError, RecursionError):
        # An id JSON cannot represent (an object, an int past the digit limit): refused,
        # naming the first such field.
        name, value = next(
            (name, value) for name, value in identity.items() if not _encodable(value)
        )
        from statekit.validation import no_text  # validation imports this module

        raise no_text(name, value) from None
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{identity['scope']}:v{SCOPE_KEY_VERSION}:{digest}"


def _canonical(identity: Any) -> str:
    return json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _encodable(value: Any) -> bool:
    try:
        _canonical(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _text(name: str, value: Any) -> str:
    from statekit.validation import context_text  # validation imports this module

    return str(context_text(name, value))


def _key_of(values: tuple[Any, ...]) -> str | None:
    identity = _identity(values)
    return None if identity is None else _scope_key(identity)


@functools.lru_cache(maxsize=4096)
def _cached_key_of(values: tuple[str | None, ...]) -> str | None:
    return _key_of(values)


def build_state_scope_keys(
    event: EventLike, binding: BindingLike, descriptor: DescriptorLike
) -> dict[str, str]:
    """Every scope that has an identity for this event, mapped to its key."""
    keys: dict[str, str] = {}
    runner_id, binding_identity = descriptor.id, get_binding_identity(binding)
    ids = event_context_values(event)
    for scope in VALID_STATE_SCOPES:
        key = scope_key_of(scope, runner_id, binding_identity, ids)
        if key is not None:
            keys[scope] = key
    return keys


# Each optional context field is read from the event's actor or subject when it is named
# after it (actor_id is event.actor.actor_id), else from the event itself (bot_id).
_EVENT_PARTS = ("actor", "subject")


def _read_from(part: str | None) -> tuple[str, ...]:
    def part_of(name: str) -> str | None:
        prefix = name.partition("_")[0]
        return prefix if prefix in _EVENT_PARTS else None

    return tuple(name for name in OPTIONAL_CONTEXT_FIELDS if part_of(name) == part)


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    get = attrgetter(*names)
    return get if len(names) > 1 else lambda obj: (get(obj),)


_OWN_FIELDS, _ACTOR_FIELDS, _SUBJECT_FIELDS = map(_read_from, (None, *_EVENT_PARTS))
_own, _actor_fields, _subject_fields = map(
    _tuple_getter, (_OWN_FIELDS, _ACTOR_FIELDS, _SUBJECT_FIELDS)
)
_NO_ACTOR = (None,) * len(_ACTOR_FIELDS)
_NO_SUBJECT = (None,) * len(_SUBJECT_FIELDS)


def event_context_values(event: EventLike) -> tuple[Any, ...]:
    """The context an event's writes store, in ``OPTIONAL_CONTEXT_FIELDS`` order, as the
    event carries it: ``None`` where an attribute (or the actor or subject) is missing,
    and no defaults applied (an actor without ``actor_type`` stores ``None``)."""
    # Every write reads its context: attrgetter over objects that have every attribute
    # (the usual case), plain getattr with defaults for the rest.
    try:
        actor, subject = event.actor, event.subject
        return (
            _own(event)
            + (_NO_ACTOR if actor is None else _actor_fields(actor))
            + (_NO_SUBJECT if subject is None else _subject_fields(subject))
        )
    except AttributeError:
        parts = (event, getattr(event, "actor", None), getattr(event, "subject", None))
        fields = (_OWN_FIELDS, _ACTOR_FIELDS, _SUBJECT_FIELDS)
        return tuple(
            getattr(part, name, None)
            for part, names in zip(parts, fields, strict=True)
            for name in names
        )


def build_state_context(
    event: EventLike, binding: BindingLike, descriptor: DescriptorLike
) -> dict[str, Any]:
    """What a host hands to the State API: ``scope_keys`` (every scope with an identity)
    plus ``runner_id``, ``binding_identity`` and the context fields stored with entries
    (the same values :meth:`StateStore.apply_update_from_event` stores)."""
    return {
        "scope_keys": build_state_scope_keys(event, binding, descriptor),
        "runner_id": descriptor.id,
        "binding_identity": get_binding_identity(binding),
        **dict(zip(OPTIONAL_CONTEXT_FIELDS, event_context_values(event), strict=True)),
    }
