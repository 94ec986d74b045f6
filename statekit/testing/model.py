"""What the store must do with each call: the rules of DESIGN.md, written out on their own.

The model predicts a call's outcome (refused, a version conflict, or written, and then
what is stored), never the order in which the store checks its arguments: every rule an
argument breaks is found independently, and a refusal may name any one of them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from statekit.scope import VALID_STATE_SCOPES, build_state_scope_key
from statekit.testing.hostile import (
    BAD_SCOPE_KEYS,
    EITHER,
    INVALID,
    Apply,
    ApplyMany,
    Delete,
    Get,
    GetVersioned,
    List,
    Set,
)
from statekit.testing.identities import Identity
from statekit.validation import MAX_STATE_KEY_LENGTH, MAX_VALUE_JSON_BYTES

VALUE_REFUSAL = re.compile(
    r"Value is not JSON-serializable: .+|"
    rf"Value size \d+ bytes exceeds limit {MAX_VALUE_JSON_BYTES} bytes",
    re.DOTALL,
)
_KEY_REFUSAL = re.compile(r"State key .+", re.DOTALL)
_SCOPE_KEY_REFUSAL = re.compile(r"Scope key must be .+", re.DOTALL)
Result = tuple[bool, str | None]


def key_ok(key: Any) -> bool:
    """The key rules of DESIGN.md, written out independently of ``statekit.validation``."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_STATE_KEY_LENGTH
        and not any(
            ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in key
        )
    )


def stored_key(key: Any) -> str | None:
    """The key as stored after the alias, or ``None`` if the rules refuse it."""
    if isinstance(key, str) and key == "conversation_id":
        key = "external.conversation_id"
    return key if key_ok(key) else None


def canonical(value: Any) -> str:
    """Equal decoded JSON values have equal canonical text; ``1`` and ``1.0`` do not."""
    return json.dumps(value, sort_keys=True)


class Model:
    """What the store must hold: ``{scope_key: {state_key: (json_text, version)}}``."""

    def __init__(self, ident: Identity, scopes: tuple[str, ...], versioned: bool) -> None:
        self.ident = ident
        self.enabled = scopes
        self.versioned = versioned
        self.scope_keys: dict[str, str] = {}
        for scope in VALID_STATE_SCOPES:
            key = build_state_scope_key(scope, ident.event, ident.binding, ident.descriptor)
            if key is not None:
                self.scope_keys[scope] = key
        self.targets = [
            *(
                self.scope_keys.get(s, f"missing-{s}-{uuid.uuid4().hex}")
                for s in VALID_STATE_SCOPES
            ),
            f"fuzz:{uuid.uuid4().hex}:é",
        ]
        self.data: dict[str, dict[str, tuple[str, int]]] = {k: {} for k in self.targets}

    def target(self, index: int) -> Any:
        return self.targets[index] if index >= 0 else BAD_SCOPE_KEYS[-index - 1]

    def write(self, scope_key: str, key: str, value: Any) -> None:
        version = self.data[scope_key].get(key, ("", 0))[1] + 1
        self.data[scope_key][key] = (canonical(json.loads(json.dumps(value))), version)

    def known(self, scope_key: Any) -> bool:
        return isinstance(scope_key, str) and scope_key in self.data

    def value(self, scope_key: Any, key: Any) -> str | None:
        stored = stored_key(key)
        if not self.known(scope_key) or stored is None:
            return None
        entry = self.data[scope_key].get(stored)
        return None if entry is None else entry[0]

    def version(self, scope_key: Any, key: Any) -> int:
        stored = stored_key(key)
        if not self.known(scope_key) or stored is None:
            return 0
        return self.data[scope_key].get(stored, ("", 0))[1]


def exactly(message: str) -> re.Pattern[str]:
    return re.compile(re.escape(message), re.DOTALL)


def check_outcome(result: Result, reasons: list[re.Pattern[str]], kind: str) -> bool:
    """Check ``result`` against the model's prediction; ``True`` if the call was refused.

    ``reasons`` holds every rule the call's arguments break, each found on its own (a value
    of kind INVALID adds the value rule): the store may report any one of them, in whatever
    order it checks. With no reason the call must succeed, except that a value of kind
    EITHER may be refused as a value.
    """
    ok, message = result
    if kind == INVALID:
        reasons = [*reasons, VALUE_REFUSAL]
    if reasons:
        assert ok is False, f"accepted despite {[r.pattern for r in reasons]}"
        assert message is not None
        assert any(r.fullmatch(message) for r in reasons), (
            f"{message!r} is none of the refusals {[r.pattern for r in reasons]}"
        )
        return True
    if not ok and kind == EITHER:
        assert message is not None
        assert VALUE_REFUSAL.fullmatch(message), message
        return True
    return False


def event_refusals(model: Model, scope: Any, key: Any) -> list[re.Pattern[str]]:
    """What ``apply_update_from_event`` may refuse ``(scope, key)`` for, one rule at a time."""
    reasons = []
    if scope not in VALID_STATE_SCOPES:
        reasons.append(exactly(f"Invalid scope: {scope}"))
    if scope not in model.enabled:
        reasons.append(exactly(f'Scope "{scope}" not enabled by binding policy'))
    if stored_key(key) is None:
        reasons.append(_KEY_REFUSAL)
    if scope in VALID_STATE_SCOPES and scope not in model.scope_keys:
        reasons.append(exactly(f'Missing identity for scope "{scope}"'))
    return reasons


def _version_ok(expected_version: Any) -> bool:
    return expected_version is None or (
        type(expected_version) is int and 0 <= expected_version < 2**63
    )


def set_refusals(model: Model, op: Set) -> list[re.Pattern[str]]:
    """What ``state_set`` may refuse ``op`` for (apart from its value), one rule at a time."""
    reasons = []
    if not model.known(model.target(op.target)):
        reasons.append(_SCOPE_KEY_REFUSAL)
    if stored_key(op.key) is None:
        reasons.append(_KEY_REFUSAL)
    if op.scope not in VALID_STATE_SCOPES:
        reasons.append(exactly(f"Invalid scope: {op.scope}"))
    if not isinstance(op.runner_id, str):
        reasons.append(exactly("runner_id and binding_identity must be strings"))
    if not _version_ok(op.expected_version):
        reasons.append(
            exactly(
                "expected_version must be an integer from 0 to 2**63 - 1, "
                f"not {op.expected_version!r}"
            )
        )
    if op.context is not None and not isinstance(op.context, Mapping):
        reasons.append(exactly(f"context must be a mapping, not {type(op.context).__name__}"))
    return reasons


def update_fields(form: str, update: Any) -> tuple[Any, Any, Any]:
    """``(scope, key, value)`` of a well-formed batch update of the given form."""
    if form == "mapping":
        return update["scope"], update["key"], update["value"]
    if form == "update":
        return update.scope, update.key, update.value
    scope, key, value = update
    return scope, key, value


def update_refusals(model: Model, form: str, update: Any) -> list[re.Pattern[str]]:
    """What ``apply_updates_from_event`` may refuse one update for (apart from its value)."""
    if form == "bad":
        shape = "Update must be a StateUpdate, a (scope, key, value) tuple or a mapping"
        return [exactly(shape)]
    if form == "mapping":
        missing = [f for f in ("scope", "key", "value") if f not in update]
        if missing:
            return [exactly(f"Update is missing {f!r}") for f in missing]
    scope, key, _ = update_fields(form, update)
    return event_refusals(model, scope, key)


def list_ok(model: Model, op: List) -> bool:
    """Whether ``state_list`` must list (else it answers ``([], False)``)."""
    prefix = "" if op.prefix is None or op.prefix == "" else stored_key(op.prefix)
    return (
        model.known(model.target(op.target))
        and prefix is not None
        and isinstance(op.limit, int)
        and not isinstance(op.limit, bool)
        and (op.after is None or key_ok(op.after))
    )


def reaches_backend(model: Model, op: Any) -> bool:
    """Whether every argument of ``op`` is valid, so the store must hand it to its backend.

    A value of kind EITHER counts as valid: the backend may see it.
    """
    if isinstance(op, (Get, Delete)):
        return model.known(model.target(op.target)) and stored_key(op.key) is not None
    if isinstance(op, GetVersioned):
        return model.versioned and reaches_backend(model, Get(op.target, op.key))
    if isinstance(op, Set):
        return (
            (op.expected_version is None or model.versioned)
            and op.value[1] != INVALID
            and not set_refusals(model, op)
        )
    if isinstance(op, List):
        return list_ok(model, op)
    if isinstance(op, Apply):
        return op.value[1] != INVALID and not event_refusals(model, op.scope, op.key)
    if isinstance(op, ApplyMany):
        return any(
            kind != INVALID and not update_refusals(model, form, update)
            for form, update, kind in op.updates
        )
    return True  # a snapshot
