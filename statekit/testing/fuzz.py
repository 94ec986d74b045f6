"""Bad input, everywhere: random calls of every public ``StateStore`` method against a model.

Each example draws a sequence of calls with valid and hostile arguments (empty, overlong,
control-character and lone-surrogate keys, non-``str`` keys, prefixes and cursors,
non-``int`` limits, NaN, bytes, sets, 300 KB strings, 2000-deep lists, huge ints, values
with non-string object keys, malformed batch updates; see :mod:`statekit.testing.hostile`).
Every call must either succeed or give a documented refusal, and never raise: the only
exception allowed is :class:`~statekit.errors.UnsupportedCapabilityError` for a version
call on a backend without :attr:`~statekit.Capability.VERSIONS`. A
:class:`~statekit.errors.StateBackendError` counts as a failure too: it means the backend
choked on input the store accepted. Afterwards the store must hold exactly what a plain
dict saw of the accepted writes (:mod:`statekit.testing.model`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from statekit.backends.base import Capability, StateBackend
from statekit.errors import UnsupportedCapabilityError
from statekit.scope import VALID_STATE_SCOPES
from statekit.store import StateStore
from statekit.testing.hostile import (
    Apply,
    ApplyMany,
    Delete,
    Get,
    GetVersioned,
    KeyCall,
    List,
    Set,
    Snapshot,
    hostile_sweep,
    operations,
)
from statekit.testing.identities import Identity, new_identity
from statekit.testing.model import (
    Model,
    canonical,
    check_outcome,
    event_refusals,
    list_ok,
    reaches_backend,
    set_refusals,
    stored_key,
    update_fields,
    update_refusals,
)
from statekit.testing.strategies import io_examples
from statekit.validation import MAX_LIST_LIMIT


class FuzzContract:
    """Mixin of :class:`~statekit.testing.StateBackendContract`: hostile input never raises,
    never writes, and never makes the store diverge from a model of the accepted writes."""

    @given(
        ops=st.lists(operations, min_size=3, max_size=30),
        enabled=st.sets(st.sampled_from(VALID_STATE_SCOPES)),
        has_subject=st.booleans(),
    )
    @io_examples
    async def test_hostile_calls_refuse_cleanly_and_match_a_model(
        self,
        store: StateStore,
        backend: StateBackend,
        ops: list[Any],
        enabled: set[str],
        has_subject: bool,
    ) -> None:
        scopes = tuple(s for s in VALID_STATE_SCOPES if s in enabled)
        ident = new_identity(scopes) if has_subject else new_identity(scopes, subject_id=None)
        versioned = Capability.VERSIONS in backend.capabilities
        await check_calls(store, ident, ops, versioned=versioned)

    async def test_every_accepted_edge_argument_is_stored_as_the_model_says(
        self, store: StateStore, backend: StateBackend
    ) -> None:
        """The calls of :func:`~statekit.testing.hostile.hostile_sweep` that reach the
        backend, each at least once: values at the size and depth limits, huge numbers,
        every kind of good key, list limits and cursors over stored keys, expected versions,
        contexts. Random draws alone would reach some of them only rarely. The sweep's
        refused calls never reach a backend; statekit's own tests check them once."""
        ident = new_identity(("conversation", "actor", "runner"))
        versioned = Capability.VERSIONS in backend.capabilities
        await check_calls(store, ident, hostile_sweep(), versioned=versioned, reaching_backend=True)


async def check_calls(
    store: StateStore,
    ident: Identity,
    ops: Iterable[Any],
    *,
    versioned: bool,
    reaching_backend: bool = False,
) -> None:
    """Run ``ops`` (see :mod:`statekit.testing.hostile`) on ``store`` against a model of
    ``ident``'s scopes, then check that the store holds exactly the model's entries.

    With ``reaching_backend`` only the calls whose every argument is valid run. What the
    calls wrote is deleted at the end, so a shared backend does not grow across examples.
    """
    model = Model(ident, ident.scopes, versioned)
    try:
        for op in ops:
            if not reaching_backend or reaches_backend(model, op):
                await _run(store, model, op)
        await _check_contents(store, model)
    finally:
        await _forget(store, model)


async def _forget(store: StateStore, model: Model) -> None:
    """Delete what the example wrote, so a shared backend does not grow across examples."""
    for scope_key in model.targets:
        for key in list(model.data[scope_key]):
            await store.state_delete(scope_key, key)


async def _run(store: StateStore, model: Model, op: Any) -> None:
    """Make ``op``'s call and check its answer against ``model``, which records what the
    call wrote."""
    await _RUNNERS[type(op)](store, model, op)


def _check_read(model: Model, op: KeyCall, value: Any) -> None:
    """``value`` is what the model holds under ``op``'s key (a stored ``null`` reads as
    missing)."""
    expected = model.value(model.target(op.target), op.key)
    assert (None if value is None else canonical(value)) == (
        None if expected == "null" else expected
    )


async def _run_get(store: StateStore, model: Model, op: Get) -> None:
    _check_read(model, op, await store.state_get(model.target(op.target), op.key))


async def _run_get_versioned(store: StateStore, model: Model, op: GetVersioned) -> None:
    if not model.versioned:
        await _check_unversioned_read(store, model, op)
        return
    value, version = await store.state_get_versioned(model.target(op.target), op.key)
    _check_read(model, op, value)
    assert version == model.version(model.target(op.target), op.key)


async def _run_delete(store: StateStore, model: Model, op: Delete) -> None:
    scope_key = model.target(op.target)
    existed = model.value(scope_key, op.key) is not None
    assert await store.state_delete(scope_key, op.key) is existed
    if existed:
        del model.data[scope_key][str(stored_key(op.key))]


async def _run_apply(store: StateStore, model: Model, op: Apply) -> None:
    ident = model.ident
    result = await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, op.scope, op.key, op.value[0]
    )
    if not check_outcome(result, event_refusals(model, op.scope, op.key), op.value[1]):
        assert result == (True, None)
        model.write(model.scope_keys[op.scope], str(stored_key(op.key)), op.value[0])


async def _run_snapshot(store: StateStore, model: Model, op: Snapshot) -> None:
    ident = model.ident
    snapshot = await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    expected: dict[str, dict[str, str]] = {}
    for scope in VALID_STATE_SCOPES:
        entries = model.data.get(model.scope_keys.get(scope, ""), {})
        enabled = scope in model.enabled
        expected[scope] = {k: v for k, (v, _) in entries.items()} if enabled else {}
    if "conversation" in model.enabled:
        conversation_id = canonical(ident.event.conversation_id)
        expected["conversation"].setdefault("external.conversation_id", conversation_id)
    assert {s: {k: canonical(v) for k, v in d.items()} for s, d in snapshot.items()} == expected


async def _check_unversioned_read(store: StateStore, model: Model, op: GetVersioned) -> None:
    """Without versions the read raises; bad arguments may give the empty answer instead."""
    scope_key = model.target(op.target)
    try:
        answer = await store.state_get_versioned(scope_key, op.key)
    except UnsupportedCapabilityError:
        return
    assert not model.known(scope_key) or stored_key(op.key) is None, "versions without VERSIONS"
    assert answer == (None, 0)


async def _run_set(store: StateStore, model: Model, op: Set) -> None:
    """Refused (for one of the reasons its arguments give), a version conflict, or written."""
    scope_key = model.target(op.target)
    args = (scope_key, op.key, op.value[0], op.runner_id, "binding", op.scope, op.context)
    ev = op.expected_version
    reasons = set_refusals(model, op)
    if ev is not None and not model.versioned:
        try:
            result = await store.state_set(*args, expected_version=ev)
        except UnsupportedCapabilityError:
            return
        # A store may refuse bad arguments before it looks at the capability; never write.
        assert check_outcome(result, reasons, op.value[1]), "a version call was accepted"
        return
    result = await store.state_set(*args, expected_version=ev)
    if check_outcome(result, reasons, op.value[1]):
        return
    key = str(stored_key(op.key))
    actual = model.version(scope_key, key)
    if ev is not None and ev != actual:
        expected = f"Version conflict on {key!r}: expected version {ev}, found {actual}"
        assert result == (False, expected)
        return
    assert result == (True, None)
    model.write(scope_key, key, op.value[0])


async def _run_list(store: StateStore, model: Model, op: List) -> None:
    scope_key = model.target(op.target)
    result = await store.state_list(scope_key, op.prefix, op.limit, op.after)
    if not list_ok(model, op):
        assert result == ([], False)
        return
    prefix = "" if op.prefix is None or op.prefix == "" else str(stored_key(op.prefix))
    matching = sorted(
        k
        for k in model.data[scope_key]
        if k.startswith(prefix) and (op.after is None or k > op.after)
    )
    page = max(0, min(op.limit, MAX_LIST_LIMIT))
    assert result == (matching[:page], len(matching) > page)


async def _run_apply_many(store: StateStore, model: Model, op: ApplyMany) -> None:
    results = await store.apply_updates_from_event(
        model.ident.event, model.ident.binding, model.ident.descriptor, [u[1] for u in op.updates]
    )
    assert len(results) == len(op.updates)
    for (form, update, kind), result in zip(op.updates, results, strict=True):
        if not check_outcome(result, update_refusals(model, form, update), kind):
            assert result == (True, None)
            scope, key, value = update_fields(form, update)
            model.write(model.scope_keys[scope], str(stored_key(key)), value)


#: The runner of each kind of call.
_RUNNERS: dict[type[Any], Callable[[StateStore, Model, Any], Awaitable[None]]] = {
    Get: _run_get,
    GetVersioned: _run_get_versioned,
    Set: _run_set,
    Delete: _run_delete,
    List: _run_list,
    Apply: _run_apply,
    ApplyMany: _run_apply_many,
    Snapshot: _run_snapshot,
}


async def _check_contents(store: StateStore, model: Model) -> None:
    exported = {
        (e.scope_key, e.state_key): (canonical(json.loads(e.value_json)), e.version)
        async for e in store.export()
        if e.scope_key in model.data
    }
    expected = {
        (scope_key, key): (text, version if model.versioned else 0)
        for scope_key, entries in model.data.items()
        for key, (text, version) in entries.items()
    }
    if not model.versioned:
        exported = {k: (text, 0) for k, (text, _) in exported.items()}
    assert exported == expected
    for scope_key, entries in model.data.items():
        listed: list[str] = []
        after: str | None = None
        while True:
            page, has_more = await store.state_list(scope_key, after=after)
            listed.extend(page)
            if not has_more:
                break
            after = page[-1]
        assert listed == sorted(entries)
        for key, (text, _) in entries.items():
            assert canonical(await store.state_get(scope_key, key)) == text
