"""The event side of the policy layer: what a run's event may read and write, and where.

Pure functions, no I/O: :class:`statekit.StateStore` calls them before it reaches a
backend, so a refused update (disabled policy, scope not enabled, missing identity,
invalid key or value) raises :class:`~statekit.validation.Refusal` and writes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from statekit.backends.base import ScopeContext
from statekit.scope import (
    DEFAULT_STATE_SCOPES,
    VALID_STATE_SCOPES,
    BindingLike,
    DescriptorLike,
    EventLike,
    event_context_values,
    get_binding_identity,
    normalize_state_key,
    scope_key_of,
)
from statekit.validation import (
    Refusal,
    check_scope,
    check_state_key,
    checked_context,
    encode_value,
)


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """One ``state.updated`` result of a run, for :meth:`StateStore.apply_updates_from_event`."""

    scope: str
    key: str
    value: Any


#: What :meth:`StateStore.apply_updates_from_event` accepts as one update.
UpdateLike = StateUpdate | tuple[str, str, Any] | Mapping[str, Any]


def binding_policy(binding: BindingLike) -> tuple[bool, Iterable[str]]:
    """``(enabled, scopes)`` of the binding's policy; no policy is the default one
    (:class:`~statekit.StatePolicy`: enabled, ``DEFAULT_STATE_SCOPES``)."""
    policy = getattr(binding, "state_policy", None)
    if policy is None:
        return True, DEFAULT_STATE_SCOPES
    return bool(policy.enable_state), policy.state_scopes


def enabled_scope_keys(
    scopes: Iterable[str], event: EventLike, binding: BindingLike, descriptor: DescriptorLike
) -> dict[str, str]:
    """The key of every scope in ``scopes`` that the event has an identity for, in
    :data:`VALID_STATE_SCOPES` order (names outside it are ignored). An identity with an
    id that has no text is left out: no write to it was ever accepted."""
    enabled = tuple([scope for scope in VALID_STATE_SCOPES if scope in scopes])
    if not enabled:
        return {}
    runner_id = descriptor.id
    try:
        binding_identity = get_binding_identity(binding)
    except Refusal:  # no scope of this binding has a key
        return {}
    ids = event_context_values(event)
    # Text ids, the usual case: a runner's snapshots keep naming the same few scopes.
    if type(runner_id) is str and _TEXT.issuperset(map(type, ids)):
        return dict(_text_scope_keys(enabled, runner_id, binding_identity, ids))
    return dict(_scope_keys(enabled, runner_id, binding_identity, ids))


def _scope_keys(
    enabled: tuple[str, ...], runner_id: Any, binding_identity: str, ids: tuple[Any, ...]
) -> tuple[tuple[str, str], ...]:
    wanted = []
    for scope in enabled:
        try:
            scope_key = scope_key_of(scope, runner_id, binding_identity, ids)
        except Refusal:
            continue
        if scope_key:
            wanted.append((scope, scope_key))
    return tuple(wanted)


_text_scope_keys = functools.lru_cache(maxsize=4096)(_scope_keys)


def prepare_event_write(
    event: EventLike,
    binding: BindingLike,
    descriptor: DescriptorLike,
    scope: str,
    key: str,
    value: Any,
) -> tuple[str, str, str, ScopeContext]:
    """``(scope_key, state_key, value_json, context)`` of a valid update (the fields of a
    :class:`~statekit.StateWrite`, which a single update does not need), else a refusal
    with the original store's message, checked in its order: policy enabled, scope name,
    scope enabled, key, identity, value; then the context (lengths, NUL)."""
    enabled, scopes = binding_policy(binding)
    if not enabled:
        raise Refusal("State is disabled by binding policy", "policy")
    check_scope(scope)
    if scope not in scopes:
        raise Refusal(f'Scope "{scope}" not enabled by binding policy', "policy")
    state_key = check_state_key(normalize_state_key(key) if isinstance(key, str) else key)
    runner_id, binding_identity = descriptor.id, get_binding_identity(binding)
    ids = event_context_values(event)
    scope_key, context = _address(scope, runner_id, binding_identity, ids)
    if not scope_key:
        raise Refusal(f'Missing identity for scope "{scope}"', "identity")
    value_json = encode_value(value)
    if context is None:  # not text, or refused: checked now, after the value
        context = checked_context(runner_id, binding_identity, scope, ids)
    return scope_key, state_key, value_json, context


_TEXT = frozenset((str, type(None)))


def _address(
    scope: str, runner_id: Any, binding_identity: Any, ids: tuple[Any, ...]
) -> tuple[str | None, ScopeContext | None]:
    """The scope key of a write and its checked context (``None`` if it is not text or is
    refused, for the caller to check in its turn): both at once for text ids, the usual
    case, as a runner's events keep naming the same few scopes."""
    if type(scope) is type(runner_id) is type(binding_identity) is str and _TEXT.issuperset(
        map(type, ids)
    ):
        return _text_address(scope, runner_id, binding_identity, ids)
    return scope_key_of(scope, runner_id, binding_identity, ids), None


@functools.lru_cache(maxsize=4096)
def _text_address(
    scope: str, runner_id: str, binding_identity: str, ids: tuple[str | None, ...]
) -> tuple[str | None, ScopeContext | None]:
    try:
        context: ScopeContext | None = checked_context(runner_id, binding_identity, scope, ids)
    except Refusal:
        context = None
    return scope_key_of(scope, runner_id, binding_identity, ids), context


def unpack_update(update: UpdateLike) -> tuple[str, str, Any]:
    """``(scope, key, value)`` of a :class:`StateUpdate`, a 3-tuple or a mapping with
    those keys; anything else is refused."""
    if isinstance(update, StateUpdate):
        return update.scope, update.key, update.value
    if isinstance(update, Mapping):
        try:
            return update["scope"], update["key"], update["value"]
        except KeyError as missing:
            raise Refusal(f"Update is missing {missing}") from None
    try:
        scope, key, value = update
    except (TypeError, ValueError):
        raise Refusal(
            "Update must be a StateUpdate, a (scope, key, value) tuple or a mapping"
        ) from None
    return scope, key, value
