"""The store's operations, wrapped in a CLIENT span and a duration measurement each.

:func:`wrap_operations` replaces a store's operation methods by traced ones on that
instance only, so a store without telemetry runs the class's methods untouched. Each
wrapper starts its span with ``tracer.start_span`` (its parent is the caller's current
span) and ends it by hand: no context manager, no ``use_span``, attributes looked up
ready-made. A failure sets ``error.type`` (the exception's class name, never its
message, which may quote the input) and the span's status; a write the store refuses
sets ``statekit.refusal.reason`` and counts in ``statekit.refusals``. A store with a
background sweeper has the sweeper's runs wrapped like ``sweep_expired``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from time import perf_counter
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from statekit.telemetry.attributes import (
    BATCH_SIZE,
    COALESCED_SIZE,
    ERROR_TYPE,
    REFUSAL_REASON,
    SCOPE_KEY,
)
from statekit.telemetry.instruments import Instruments, OperationAttributes
from statekit.telemetry.recorder import OPERATION, OperationNotes

__all__ = ["wrap_operations"]

_CLIENT = SpanKind.CLIENT

Args = tuple[Any, ...]
ScopeOf = Callable[[Args, Mapping[str, Any]], str | None]
Attrs = Mapping[str, Any]
#: ``finish(span, result, notes, attributes, kwargs)``: what the result of a call tells
#: (counts, a version conflict), added before its span ends. Counters count whether or
#: not the span records; a span's ``set_attribute`` is a no-op when it does not.
Finish = Callable[[Any, Any, OperationNotes, Attrs, Attrs], None]


def _scope_key(args: Args, kwargs: Mapping[str, Any]) -> str | None:
    """The text before a scope key's first colon: a scope name when statekit built the
    key (``actor:v2:<digest>``); any other text finds no attribute set of its own."""
    key = args[0] if args else kwargs.get("scope_key")
    return key.partition(":")[0] if isinstance(key, str) else None


def _scope_argument(args: Args, kwargs: Mapping[str, Any]) -> str | None:
    """``apply_update_from_event(event, binding, descriptor, scope, ...)``: a scope name."""
    scope = args[3] if len(args) > 3 else kwargs.get("scope")
    return scope if isinstance(scope, str) else None


def _no_scope(args: Args, kwargs: Mapping[str, Any]) -> str | None:
    return None


def _failed(
    tools: Instruments, span: Any, exc: BaseException, attributes: Mapping[str, Any], began: float
) -> None:
    error_type = type(exc).__qualname__
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, error_type))
    span.end()
    tools.duration.record(perf_counter() - began, {**attributes, ERROR_TYPE: error_type})


def _traced(
    tools: Instruments,
    op: OperationAttributes,
    method: Callable[..., Any],
    scope_of: ScopeOf,
    finish: Finish | None = None,
) -> Callable[..., Any]:
    """``method`` (a coroutine function) in a span and a duration measurement.

    The span is started with ``tracer.start_span`` (its parent is the caller's current
    span) and ended by hand: it is never made current, since nothing under a store call
    starts spans of its own, which saves attaching and detaching a context per call.
    The attribute dict is looked up ready-made and shared by the span and the histogram;
    what only a recording span keeps (the scope key, a coalesced batch's size) is skipped
    for a span the sampler dropped. :class:`OperationNotes` is current during the call,
    for the refusals and the coalesced batch noted under it.
    """
    start_span, record = tools.tracer.start_span, tools.duration.record
    scoped, unscoped = op.by_scope.get, op.by_scope[None]
    name, scope_keys = op.name, tools.scope_keys

    @functools.wraps(method)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        # Only a scope name finds its set: a host's key or a bad scope gets the bare one.
        attributes = scoped(scope_of(args, kwargs), unscoped)
        span = start_span(name, kind=_CLIENT, attributes=attributes)
        notes = OperationNotes()
        token = OPERATION.set(notes)
        began = perf_counter()
        try:
            result = await method(*args, **kwargs)
        except BaseException as exc:
            if (notes.coalesced or scope_keys) and span.is_recording():
                _annotate(span, notes, scope_keys, args, kwargs)
            _failed(tools, span, exc, attributes, began)
            raise
        finally:
            OPERATION.reset(token)
        elapsed = perf_counter() - began
        if (notes.coalesced or scope_keys) and span.is_recording():
            _annotate(span, notes, scope_keys, args, kwargs)
        if finish is not None:
            finish(span, result, notes, attributes, kwargs)
        span.end()
        record(elapsed, attributes)
        return result

    return traced


def _annotate(
    span: Any, notes: OperationNotes, scope_keys: bool, args: Args, kwargs: Mapping[str, Any]
) -> None:
    """What only a recording span carries: the coalesced batch's size, and the scope key
    when the host chose to record them (``Telemetry(scope_keys=True)``)."""
    if notes.coalesced:
        span.set_attribute(COALESCED_SIZE, notes.coalesced)
    if scope_keys:
        key = args[0] if args else kwargs.get("scope_key")
        if isinstance(key, str):
            span.set_attribute(SCOPE_KEY, key)


def _write_outcome(tools: Instruments, op: OperationAttributes) -> Finish:
    """A write returning ``(ok, reason)`` (or a list of them): its refusals by class,
    and for ``state_set``, a ``(False, ...)`` that no refusal made is a version conflict."""
    conflicts = tools.conflicts

    def finish(span: Any, result: Any, notes: OperationNotes, attrs: Attrs, kwargs: Attrs) -> None:
        if isinstance(result, list):
            span.set_attribute(BATCH_SIZE, len(result))
        if notes.refused:
            _count_refusals(tools, op, span, notes.refused)
        elif isinstance(result, tuple) and result[0] is False:
            conflicts.add(1, attrs)

    return finish


def _count_refusals(
    tools: Instruments, op: OperationAttributes, span: Any, reasons: list[str]
) -> None:
    fallback = op.refusals["argument"]
    for reason in reasons:
        tools.refusals.add(1, op.refusals.get(reason, fallback))
    kinds = sorted({reason if reason in op.refusals else "argument" for reason in reasons})
    span.set_attribute(REFUSAL_REASON, kinds[0] if len(kinds) == 1 else kinds)


def _traced_stream(
    tools: Instruments, op: OperationAttributes, method: Callable[..., Any]
) -> Callable[..., Any]:
    """A method returning an async iterator: its span runs from the first item asked
    for to the last one given (a refused filter, raised at once, gets one too)."""
    attributes = op.by_scope[None]

    @functools.wraps(method)
    def traced(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            stream = method(*args, **kwargs)
        except BaseException as exc:
            span = tools.tracer.start_span(op.name, kind=_CLIENT, attributes=attributes)
            _failed(tools, span, exc, attributes, perf_counter())
            raise
        return _spanned(tools, op, stream)

    return traced


async def _spanned(
    tools: Instruments, op: OperationAttributes, stream: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    attributes = op.by_scope[None]
    span = tools.tracer.start_span(op.name, kind=_CLIENT, attributes=attributes)
    began = perf_counter()
    try:
        async for item in stream:
            yield item
    except GeneratorExit:  # the caller stopped early: not a failure
        pass
    except BaseException as exc:
        _failed(tools, span, exc, attributes, began)
        raise
    span.end()
    tools.duration.record(perf_counter() - began, attributes)


def _removed(tools: Instruments, operation: str) -> Finish:
    """Count what a sweep or an erasure removed (an erasure's dry run removes nothing)."""
    scopes, entries = tools.removed[operation, "scopes"], tools.removed[operation, "entries"]
    backend = tools.backend

    def finish(span: Any, result: Any, notes: OperationNotes, attrs: Attrs, kwargs: Attrs) -> None:
        if kwargs.get("dry_run"):
            return
        scopes.add(result.scopes, backend)
        entries.add(result.entries, backend)

    return finish


#: Method -> (operation name, where its scope name is). Writes and streams apart.
_READS: dict[str, tuple[str, ScopeOf]] = {
    "build_snapshot_from_event": ("snapshot", _no_scope),
    "read_scope": ("read scope", _scope_key),
    "state_get": ("get", _scope_key),
    "state_get_versioned": ("versioned get", _scope_key),
    "state_delete": ("delete", _scope_key),
    "state_list": ("list", _scope_key),
    "scope_expiry": ("scope expiry", _scope_key),
    "import_entries": ("import", _no_scope),
    "clear_all": ("clear", _no_scope),
}
_WRITES: dict[str, tuple[str, ScopeOf]] = {
    "state_set": ("set", _scope_key),
    "apply_update_from_event": ("set", _scope_argument),
    "apply_updates_from_event": ("batch set", _no_scope),
}
_STREAMS = {"export": "export", "find_scopes": "find scopes"}
_REMOVALS = {"sweep_expired": ("sweep", "sweep"), "erase": ("erase", "erasure")}


def wrap_operations(store: Any, tools: Instruments) -> None:
    """Replace ``store``'s operations (on the instance) by traced ones."""
    for method, (name, scope_of) in _READS.items():
        setattr(
            store, method, _traced(tools, tools.operation(name), getattr(store, method), scope_of)
        )
    for method, (name, scope_of) in _WRITES.items():
        op = tools.operation(name)
        wrapped = _traced(tools, op, getattr(store, method), scope_of, _write_outcome(tools, op))
        setattr(store, method, wrapped)
    for method, name in _STREAMS.items():
        setattr(store, method, _traced_stream(tools, tools.operation(name), getattr(store, method)))
    for method, (name, counted) in _REMOVALS.items():
        finish = _removed(tools, counted)
        wrapped = getattr(store, method)
        setattr(store, method, _traced(tools, tools.operation(name), wrapped, _no_scope, finish))
    store._refuse = _noting_refusals(store._refuse)
    sweeper = store._expiry.sweeper
    if sweeper is not None:  # a background sweep: the span and counts of an explicit one
        name, counted = _REMOVALS["sweep_expired"]
        finish = _removed(tools, counted)
        sweeper.sweep = _traced(tools, tools.operation(name), sweeper.sweep, _no_scope, finish)


def _noting_refusals(refuse: Callable[..., Any]) -> Callable[..., Any]:
    """The store's refusal hook, also noting the refusal's class for the write's span."""

    @functools.wraps(refuse)
    def noting(refusal: Any, *args: Any, **kwargs: Any) -> Any:
        notes = OPERATION.get()
        if notes is not None:
            if notes.refused is None:
                notes.refused = []
            notes.refused.append(str(getattr(refusal, "reason", "argument")))
        return refuse(refusal, *args, **kwargs)

    return noting
