"""The store's operations, wrapped in a CLIENT span and a duration measurement each.

:func:`wrap_operations` replaces a store's operation methods by traced ones on that
instance only, so a store without telemetry runs the class's methods untouched. Each
wrapper starts its span with ``tracer.start_span`` (its parent is the caller's current
span) and ends it by hand: no context manager, no ``use_span``, attributes looked up
ready-made. A failure sets ``error.type`` (the exception's class name, never its
message, which may quote the input) and the span's status; a write the store refuses
sets ``statekit.refusal.reason`` and counts in ``statekit.refusals``.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from time import perf_counter
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from statekit.telemetry.attributes import (
    BATCH_SIZE,
    ERROR_TYPE,
    REFUSAL_REASON,
    SCOPE_KEY,
    scope_name,
)
from statekit.telemetry.instruments import Instruments, OperationAttributes

__all__ = ["wrap_operations"]

_CLIENT = SpanKind.CLIENT
#: The reasons of the refusals made by the write under way in this task.
_REFUSED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "statekit_refused", default=None
)

Args = tuple[Any, ...]
ScopeOf = Callable[[Args, Mapping[str, Any]], str | None]


def _scope_key(args: Args, kwargs: Mapping[str, Any]) -> str | None:
    return scope_name(args[0] if args else kwargs.get("scope_key"))


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
    finish: Callable[[Any, Any, Args, Mapping[str, Any]], None] | None = None,
) -> Callable[..., Any]:
    """``method`` (a coroutine function) in a span; ``finish(span, result, args, kwargs)``
    adds what the result tells (counts, a version conflict) before the span ends."""
    start_span, record, by_scope = tools.tracer.start_span, tools.duration.record, op.by_scope
    name, scope_keys = op.name, tools.scope_keys

    @functools.wraps(method)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        attributes = by_scope[scope_of(args, kwargs)]
        span = start_span(name, kind=_CLIENT, attributes=attributes)
        if scope_keys:
            _name_scope_key(span, args, kwargs)
        began = perf_counter()
        try:
            result = await method(*args, **kwargs)
        except BaseException as exc:
            _failed(tools, span, exc, attributes, began)
            raise
        if finish is not None:
            finish(span, result, args, kwargs)
        span.end()
        record(perf_counter() - began, attributes)
        return result

    return traced


def _traced_write(
    tools: Instruments, op: OperationAttributes, method: Callable[..., Any], scope_of: ScopeOf
) -> Callable[..., Any]:
    """A write returning ``(ok, reason)`` (or a list of them): its refusals by class,
    and for ``state_set``, a ``(False, ...)`` that no refusal made is a version conflict."""
    start_span, record, by_scope = tools.tracer.start_span, tools.duration.record, op.by_scope
    name, scope_keys = op.name, tools.scope_keys

    @functools.wraps(method)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        attributes = by_scope[scope_of(args, kwargs)]
        span = start_span(name, kind=_CLIENT, attributes=attributes)
        if scope_keys:
            _name_scope_key(span, args, kwargs)
        began = perf_counter()
        refused: list[str] = []
        token = _REFUSED.set(refused)
        try:
            result = await method(*args, **kwargs)
        except BaseException as exc:
            _failed(tools, span, exc, attributes, began)
            raise
        finally:
            _REFUSED.reset(token)
        if isinstance(result, list):
            span.set_attribute(BATCH_SIZE, len(result))
        if refused:
            _count_refusals(tools, op, span, refused)
        elif isinstance(result, tuple) and result[0] is False:
            tools.conflicts.add(1, attributes)
        span.end()
        record(perf_counter() - began, attributes)
        return result

    return traced


def _count_refusals(
    tools: Instruments, op: OperationAttributes, span: Any, reasons: list[str]
) -> None:
    fallback = op.refusals["argument"]
    for reason in reasons:
        tools.refusals.add(1, op.refusals.get(reason, fallback))
    kinds = sorted({reason if reason in op.refusals else "argument" for reason in reasons})
    span.set_attribute(REFUSAL_REASON, kinds[0] if len(kinds) == 1 else kinds)


def _name_scope_key(span: Any, args: Args, kwargs: Mapping[str, Any]) -> None:
    """Only with ``Telemetry(scope_keys=True)``: the host chose to record them."""
    key = args[0] if args else kwargs.get("scope_key")
    if isinstance(key, str):
        span.set_attribute(SCOPE_KEY, key)


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


def _removed(
    tools: Instruments, operation: str
) -> Callable[[Any, Any, Args, Mapping[str, Any]], None]:
    """Count what a sweep or an erasure removed (an erasure's dry run removes nothing)."""
    scopes, entries = tools.removed[operation, "scopes"], tools.removed[operation, "entries"]
    attributes = tools.backend

    def finish(span: Any, result: Any, args: Args, kwargs: Mapping[str, Any]) -> None:
        if kwargs.get("dry_run"):
            return
        scopes.add(result.scopes, attributes)
        entries.add(result.entries, attributes)

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
        wrapped = getattr(store, method)
        setattr(store, method, _traced_write(tools, tools.operation(name), wrapped, scope_of))
    for method, name in _STREAMS.items():
        setattr(store, method, _traced_stream(tools, tools.operation(name), getattr(store, method)))
    for method, (name, counted) in _REMOVALS.items():
        finish = _removed(tools, counted)
        wrapped = getattr(store, method)
        setattr(store, method, _traced(tools, tools.operation(name), wrapped, _no_scope, finish))
    store._refuse = _noting_refusals(store._refuse)


def _noting_refusals(refuse: Callable[..., Any]) -> Callable[..., Any]:
    """The store's refusal hook, also noting the refusal's class for the write's span."""

    @functools.wraps(refuse)
    def noting(refusal: Any, *args: Any, **kwargs: Any) -> Any:
        refused = _REFUSED.get()
        if refused is not None:
            refused.append(str(getattr(refusal, "reason", "argument")))
        return refuse(refusal, *args, **kwargs)

    return noting
