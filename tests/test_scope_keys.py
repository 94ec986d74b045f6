"""Scope keys: one key per identity, never shared between tenants, in the stored v2 format.

The property is injectivity: two events get the same scope key exactly when the fields
that define that scope (DESIGN.md, "Scope keys") are equal, whatever the ids contain.
The expected identity is rebuilt here from the written recipe, not from ``statekit.scope``.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statekit.backends.base import OPTIONAL_CONTEXT_FIELDS
from statekit.models import (
    ActorContext,
    AgentBinding,
    AgentEventEnvelope,
    BindingScope,
    RunnerDescriptor,
    SubjectContext,
)
from statekit.scope import (
    VALID_STATE_SCOPES,
    build_state_context,
    build_state_scope_key,
    build_state_scope_keys,
    event_context_values,
    get_binding_identity,
)

# Ids that break naive key concatenation: separators, quotes, escapes, unicode, lookalikes.
_TRICKY = [
    "",
    "a",
    "b",
    "a:b",
    "a:",
    ":b",
    ":",
    "a/b",
    "/",
    '"',
    'a"b',
    "\\",
    "a\\b",
    "\\u0061",
    "null",
    "None",
    "A",
    "é",
    "e\u0301",
    "😀",
    "\ud83d\ude00",
    "\ud800",
    "a\tb",
    "\x7f",
    "\u2028",
    "conversation:v2:",
    "unknown_binding",
    "user",
    "unknown",
]
ids = st.sampled_from(_TRICKY) | st.text(st.characters(exclude_characters="\x00"), max_size=6)
optional_ids = st.none() | ids


_OPTIONAL_FIELDS = (
    "binding_id",
    "scope_type",
    "scope_id",
    "bot_id",
    "workspace_id",
    "conversation_id",
    "thread_id",
    "actor_type",
    "actor_id",
    "subject_type",
    "subject_id",
)
identity_fields = st.fixed_dictionaries(
    {"runner_id": ids, **dict.fromkeys(_OPTIONAL_FIELDS, optional_ids)}
)


def _models(f: dict[str, Any]) -> tuple[AgentEventEnvelope, AgentBinding, RunnerDescriptor]:
    event = AgentEventEnvelope(
        bot_id=f["bot_id"],
        workspace_id=f["workspace_id"],
        conversation_id=f["conversation_id"],
        thread_id=f["thread_id"],
        actor=ActorContext.model_construct(actor_type=f["actor_type"], actor_id=f["actor_id"]),
        subject=SubjectContext.model_construct(
            subject_type=f["subject_type"], subject_id=f["subject_id"]
        ),
    )
    binding = AgentBinding(
        binding_id=f["binding_id"],
        scope=BindingScope(scope_type=f["scope_type"], scope_id=f["scope_id"]),
    )
    return event, binding, RunnerDescriptor(id=f["runner_id"])


def _namespaces(f: dict[str, Any]) -> tuple[SimpleNamespace, SimpleNamespace, SimpleNamespace]:
    event = SimpleNamespace(
        bot_id=f["bot_id"],
        workspace_id=f["workspace_id"],
        conversation_id=f["conversation_id"],
        thread_id=f["thread_id"],
        actor=SimpleNamespace(actor_type=f["actor_type"], actor_id=f["actor_id"]),
        subject=SimpleNamespace(subject_type=f["subject_type"], subject_id=f["subject_id"]),
    )
    binding = SimpleNamespace(
        binding_id=f["binding_id"],
        scope=SimpleNamespace(scope_type=f["scope_type"], scope_id=f["scope_id"]),
        state_policy=None,
    )
    return event, binding, SimpleNamespace(id=f["runner_id"])


def _key(scope: str, f: dict[str, Any]) -> str | None:
    return build_state_scope_key(scope, *_models(f))


def expected_identity(scope: str, f: dict[str, Any]) -> dict[str, Any] | None:
    """DESIGN.md's recipe, written out independently of ``statekit.scope``."""
    if f["binding_id"]:
        binding = f["binding_id"]
    elif f["scope_type"] and f["scope_id"]:
        binding = f"{f['scope_type']}:{f['scope_id']}"
    else:
        binding = "unknown_binding"
    identity = {
        "version": 2,
        "scope": scope,
        "runner_id": f["runner_id"],
        "binding_identity": binding,
        "bot_id": f["bot_id"],
        "workspace_id": f["workspace_id"],
    }
    if scope == "conversation":
        if not f["conversation_id"]:
            return None
        identity.update(conversation_id=f["conversation_id"], thread_id=f["thread_id"])
    elif scope == "actor":
        if not f["actor_id"]:
            return None
        identity.update(actor_type=f["actor_type"] or "user", actor_id=f["actor_id"])
    elif scope == "subject":
        if not f["subject_id"]:
            return None
        identity.update(subject_type=f["subject_type"] or "unknown", subject_id=f["subject_id"])
    return identity


def expected_key(scope: str, f: dict[str, Any]) -> str | None:
    identity = expected_identity(scope, f)
    if identity is None:
        return None
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{scope}:v2:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


_scopes = st.sampled_from(VALID_STATE_SCOPES)
_props = settings(max_examples=300, deadline=None)


# ---- injectivity --------------------------------------------------------------------------


@given(scope=_scopes, first=identity_fields, second=identity_fields)
@_props
def test_same_key_iff_same_scope_identity(
    scope: str, first: dict[str, Any], second: dict[str, Any]
) -> None:
    one, two = _key(scope, first), _key(scope, second)
    if one is None or two is None:
        return
    assert (one == two) == (expected_identity(scope, first) == expected_identity(scope, second))


@given(scope=_scopes, base=identity_fields, data=st.data())
@_props
def test_changing_one_identity_field_changes_the_key(
    scope: str, base: dict[str, Any], data: st.DataObject
) -> None:
    """Every field the scope covers separates tenants; fields it does not cover do not."""
    name = data.draw(st.sampled_from(sorted(base)), label="field")
    values = ids if name == "runner_id" else optional_ids
    other = dict(base, **{name: data.draw(values.filter(lambda v: v != base[name]))})
    one, two = _key(scope, base), _key(scope, other)
    if one is None or two is None:
        return
    same_identity = expected_identity(scope, base) == expected_identity(scope, other)
    assert (one == two) is same_identity


@given(fields=st.lists(identity_fields, min_size=2, max_size=25))
@settings(max_examples=100, deadline=None)
def test_keys_of_many_tenants_never_collide_across_scopes(fields: list[dict[str, Any]]) -> None:
    owners: dict[str, tuple[str, str]] = {}
    for f in fields:
        for scope in VALID_STATE_SCOPES:
            key = _key(scope, f)
            if key is None:
                continue
            owner = (scope, json.dumps(expected_identity(scope, f), sort_keys=True))
            assert owners.setdefault(key, owner) == owner
            assert key.startswith(f"{scope}:v2:")


@given(scope=_scopes, f=identity_fields)
@_props
def test_key_follows_the_written_recipe(scope: str, f: dict[str, Any]) -> None:
    assert _key(scope, f) == expected_key(scope, f)


# ---- the documented equivalences and missing identities ------------------------------------


def _fields(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(_OPTIONAL_FIELDS)
    base.update(runner_id="runner-1", conversation_id="c-1", actor_id="u-1", subject_id="s-1")
    base.update(overrides)
    return base


def test_binding_id_and_scope_fallback_are_one_identity_by_design() -> None:
    """A binding without an id is ``"{scope_type}:{scope_id}"``: the binding with id
    ``"team:42"`` and the id-less binding scoped to team 42 share state on purpose."""
    by_id = _fields(binding_id="team:42")
    by_scope = _fields(scope_type="team", scope_id="42")
    for scope in VALID_STATE_SCOPES:
        assert _key(scope, by_id) == _key(scope, by_scope)
    # The split point is not part of the identity either: ("a:b", "c") is ("a", "b:c").
    assert _key("runner", _fields(scope_type="a:b", scope_id="c")) == _key(
        "runner", _fields(scope_type="a", scope_id="b:c")
    )


def test_bindings_without_identity_share_unknown_binding_by_design() -> None:
    nameless = [
        _fields(),
        _fields(binding_id=""),
        _fields(scope_type="team"),
        _fields(scope_id="42"),
        _fields(binding_id="unknown_binding"),
    ]
    assert len({_key("runner", f) for f in nameless}) == 1
    assert _key("runner", _fields(binding_id="x")) != _key("runner", nameless[0])


def test_default_actor_and_subject_types_are_part_of_the_identity() -> None:
    assert _key("actor", _fields(actor_type=None)) == _key("actor", _fields(actor_type="user"))
    assert _key("actor", _fields(actor_type="")) == _key("actor", _fields(actor_type="user"))
    assert _key("actor", _fields(actor_type="bot")) != _key("actor", _fields(actor_type="user"))
    assert _key("subject", _fields(subject_type=None)) == _key(
        "subject", _fields(subject_type="unknown")
    )


def test_absent_and_empty_optional_ids_are_different_tenants() -> None:
    for name in ("bot_id", "workspace_id", "thread_id"):
        assert _key("conversation", _fields(**{name: None})) != _key(
            "conversation", _fields(**{name: ""})
        )


@pytest.mark.parametrize(
    ("scope", "field"),
    [("conversation", "conversation_id"), ("actor", "actor_id"), ("subject", "subject_id")],
)
@pytest.mark.parametrize("missing", [None, ""])
def test_missing_scope_id_means_no_key(scope: str, field: str, missing: str | None) -> None:
    assert _key(scope, _fields(**{field: missing})) is None
    event, binding, descriptor = _models(_fields(**{field: missing}))
    assert scope not in build_state_scope_keys(event, binding, descriptor)


def test_absent_actor_and_subject_objects_mean_no_key() -> None:
    event = SimpleNamespace(bot_id=None, workspace_id=None, conversation_id="c", thread_id=None)
    binding = SimpleNamespace(binding_id="b", scope=None, state_policy=None)
    keys = build_state_scope_keys(event, binding, SimpleNamespace(id="r"))
    assert set(keys) == {"conversation", "runner"}


@pytest.mark.parametrize("scope", VALID_STATE_SCOPES)
def test_equal_ids_that_encode_differently_are_different_tenants(scope: str) -> None:
    # 1 == 1.0 == True, but their JSON differs: each is its own identity, on every call.
    base = dict.fromkeys(_OPTIONAL_FIELDS, "x") | {"runner_id": "r"}
    for _ in range(2):
        for name in ("bot_id", "conversation_id", "actor_id", "subject_id"):
            keys = {_namespaced_key(scope, base | {name: v}) for v in (1, 1.0, True, "1")}
            recipe = {expected_key(scope, base | {name: v}) for v in (1, 1.0, True, "1")}
            assert keys == recipe
            hashed = name == "bot_id" or name.startswith(scope)
            assert len(keys) == (4 if hashed else 1)


def _namespaced_key(scope: str, f: dict[str, Any]) -> str | None:
    return build_state_scope_key(scope, *_namespaces(f))


def test_unknown_scope_has_no_key() -> None:
    assert _key("global", _fields()) is None
    assert _key("Conversation", _fields()) is None


# ---- golden: the v2 format existing deployments store --------------------------------------

#: The runner, binding and tenant of the golden conversation keys.
_GOLDEN = {
    "runner_id": "runner-1",
    "binding_id": "binding-1",
    "bot_id": "bot-1",
    "workspace_id": "ws-1",
}


def test_golden_key_computed_from_the_recipe() -> None:
    f = _fields(**_GOLDEN, conversation_id="c:1/é", thread_id=None)
    canonical = (
        '{"binding_identity":"binding-1","bot_id":"bot-1","conversation_id":"c:1/é",'
        '"runner_id":"runner-1","scope":"conversation","thread_id":null,"version":2,'
        '"workspace_id":"ws-1"}'
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert _key("conversation", f) == f"conversation:v2:{digest}"

    actor = _fields(runner_id="r", scope_type="team", scope_id="42", actor_id='u"1')
    canonical = (
        '{"actor_id":"u\\"1","actor_type":"user","binding_identity":"team:42","bot_id":null,'
        '"runner_id":"r","scope":"actor","version":2,"workspace_id":null}'
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert _key("actor", actor) == f"actor:v2:{digest}"


def test_golden_literal_key_is_pinned() -> None:
    """An accidental change of the format orphans every stored row: this must never move."""
    f = _fields(**_GOLDEN, conversation_id="conv-1", thread_id="thread-1")
    assert _key("conversation", f) == PINNED_CONVERSATION_KEY
    assert _key("runner", f) == PINNED_RUNNER_KEY


PINNED_CONVERSATION_KEY = (
    "conversation:v2:ec44d05c1857092669424e2484049123b8fbf68c75fef0a568fb976e68dbd5ed"
)
PINNED_RUNNER_KEY = "runner:v2:27d3081e2a900808c387dfc774304b51c88962961d82cb3ca8231b004558d068"


# ---- duck typing ------------------------------------------------------------------------------


@given(f=identity_fields)
@settings(max_examples=150, deadline=None)
def test_plain_objects_give_the_same_keys_as_the_models(f: dict[str, Any]) -> None:
    models, plain = _models(f), _namespaces(f)
    assert build_state_scope_keys(*models) == build_state_scope_keys(*plain)
    assert get_binding_identity(models[1]) == get_binding_identity(plain[1])
    model_context = build_state_context(*models)
    plain_context = build_state_context(*plain)
    assert model_context == plain_context


@given(f=identity_fields)
@settings(max_examples=100, deadline=None)
def test_the_context_holds_each_field_as_the_event_carries_it(f: dict[str, Any]) -> None:
    context = build_state_context(*_models(f))
    for name in OPTIONAL_CONTEXT_FIELDS:
        assert context[name] == f[name], name
    assert (context["runner_id"], context["binding_identity"]) == (
        f["runner_id"],
        get_binding_identity(_models(f)[1]),
    )


def test_a_missing_actor_subject_or_attribute_gives_none_in_the_context() -> None:
    bare = SimpleNamespace(conversation_id="c", actor=None)  # no subject, no bot_id, ...
    values = dict(zip(OPTIONAL_CONTEXT_FIELDS, event_context_values(bare), strict=True))
    assert values == {name: ("c" if name == "conversation_id" else None) for name in values}
    partial = SimpleNamespace(
        bot_id="b",
        workspace_id=None,
        conversation_id=None,
        thread_id=None,
        actor=SimpleNamespace(actor_id="a"),
        subject=None,
    )
    values = dict(zip(OPTIONAL_CONTEXT_FIELDS, event_context_values(partial), strict=True))
    assert (values["bot_id"], values["actor_id"], values["actor_type"]) == ("b", "a", None)
