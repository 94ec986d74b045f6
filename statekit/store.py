"""The policy and validation layer, written once above every backend.

:class:`StateStore` keeps the public methods and return conventions of the original
SQL-only persistent state store (``(ok, error_message)`` tuples, ``None`` for a missing
value, ``(keys, has_more)`` for listings) and adds what a production store needs:
conditional sets, batch updates, export, and typed backend errors.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

from statekit.backends.base import (
    OPTIONAL_CONTEXT_FIELDS,
    BackendInfo,
    Capability,
    ScopeContext,
    StateBackend,
    StateEntry,
    StateWrite,
    VersionedBackend,
)
from statekit.errors import UnsupportedCapabilityError, VersionConflictError
from statekit.scope import (
    VALID_STATE_SCOPES,
    BindingLike,
    DescriptorLike,
    EventLike,
    build_state_scope_key,
    get_binding_identity,
    normalize_state_key,
)
from statekit.validation import (
    MAX_EXPECTED_VERSION,
    Refusal,
    check_context,
    check_limit,
    check_prefix,
    check_scope_key,
    check_state_key,
    decode_value,
    encode_value,
)

_log = logging.getLogger("statekit")
_INVALID = object()  # a stored value that is not valid JSON

Result = tuple[bool, str | None]


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """One ``state.updated`` result of a run, for :meth:`StateStore.apply_updates_from_event`."""

    scope: str
    key: str
    value: Any


def _empty_snapshot() -> dict[str, dict[str, Any]]:
    return {scope: {} for scope in VALID_STATE_SCOPES}


def _policy(binding: BindingLike) -> tuple[bool, Iterable[str]]:
    policy = getattr(binding, "state_policy", None)
    if policy is None:
        from statekit.models import StatePolicy

        policy = StatePolicy()
    return bool(policy.enable_state), policy.state_scopes


def _event_context(
    scope: str, event: EventLike, binding: BindingLike, descriptor: DescriptorLike
) -> ScopeContext:
    """The context stored with an event's writes, checked (:class:`Refusal` if unstorable)."""
    actor = getattr(event, "actor", None)
    subject = getattr(event, "subject", None)
    return _context(
        descriptor.id,
        get_binding_identity(binding),
        scope,
        (
            getattr(event, "bot_id", None),
            getattr(event, "workspace_id", None),
            getattr(event, "conversation_id", None),
            getattr(event, "thread_id", None),
            getattr(actor, "actor_type", None),
            getattr(actor, "actor_id", None),
            getattr(subject, "subject_type", None),
            getattr(subject, "subject_id", None),
        ),
    )


_NO_EXTRA: tuple[None, ...] = (None,) * len(OPTIONAL_CONTEXT_FIELDS)


def _context(
    runner_id: str, binding_identity: str, scope: str, extra: tuple[Any, ...]
) -> ScopeContext:
    """``ScopeContext.from_mapping`` over ``extra`` (values in ``OPTIONAL_CONTEXT_FIELDS``
    order), checked (:class:`Refusal` if unstorable).

    Text ids (the usual case) map to their checked context through a cache, as a runner
    keeps writing to the same few scopes: building and checking it is a good part of a
    write's cost. Other values are converted and checked every time (1 and True are equal
    cache keys, but not equal text).
    """
    values = (runner_id, binding_identity, scope, *extra)
    for value in values:
        if value is not None and type(value) is not str:
            mapping = dict(zip(OPTIONAL_CONTEXT_FIELDS, extra, strict=True))
            context = ScopeContext.from_mapping(runner_id, binding_identity, scope, mapping)
            return check_context(context)
    return _checked_context(values)


@functools.lru_cache(maxsize=4096)
def _checked_context(values: tuple[str | None, ...]) -> ScopeContext:
    return check_context(ScopeContext(*values))  # type: ignore[arg-type]


class StateStore:
    """Host-owned runner state over any :class:`~statekit.backends.base.StateBackend`.

    Refused input never raises and never writes: setters return ``(False, message)``,
    readers return ``None`` / ``False`` / ``([], False)``. Backend faults raise a
    :class:`~statekit.errors.StateBackendError` subclass. Use as ``async with`` or call
    :meth:`aclose` to release the backend's connections.
    """

    def __init__(self, backend: StateBackend) -> None:
        self._backend = backend

    @property
    def backend(self) -> StateBackend:
        return self._backend

    async def __aenter__(self) -> StateStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend (idempotent)."""
        await self._backend.aclose()

    # ---- event-driven API -------------------------------------------------------

    async def build_snapshot_from_event(
        self, event: EventLike, binding: BindingLike, descriptor: DescriptorLike
    ) -> dict[str, dict[str, Any]]:
        """Every enabled scope's state as four dicts, read in one backend round trip.

        A disabled policy gives four empty dicts without I/O. The conversation scope is
        seeded with ``external.conversation_id`` from the event when that key is not stored.
        """
        snapshot = _empty_snapshot()
        enabled, scopes = _policy(binding)
        if not enabled:
            return snapshot
        wanted: dict[str, str] = {}
        for scope in VALID_STATE_SCOPES:
            if scope in scopes:
                scope_key = build_state_scope_key(scope, event, binding, descriptor)
                if scope_key:
                    wanted[scope] = scope_key
        if wanted:
            stored = await self._backend.read_scopes(list(wanted.values()))
            for scope, scope_key in wanted.items():
                snapshot[scope] = self._decode_scope(scope_key, stored.get(scope_key, {}))
        conversation_id = getattr(event, "conversation_id", None)
        if "conversation" in scopes and conversation_id:
            snapshot["conversation"].setdefault("external.conversation_id", conversation_id)
        return snapshot

    async def apply_update_from_event(
        self,
        event: EventLike,
        binding: BindingLike,
        descriptor: DescriptorLike,
        scope: str,
        key: str,
        value: Any,
        logger: Any = None,
    ) -> Result:
        """Apply one ``state.updated`` result: policy, key rules, JSON rules, then upsert.

        Returns ``(True, None)`` or ``(False, reason)`` with the original store's messages.
        """
        try:
            write = self._prepare_event_write(event, binding, descriptor, scope, key, value)
        except Refusal as refusal:
            return self._refuse(refusal, logger)
        await self._backend.set(*write)
        return True, None

    async def apply_updates_from_event(
        self,
        event: EventLike,
        binding: BindingLike,
        descriptor: DescriptorLike,
        updates: Iterable[StateUpdate | tuple[str, str, Any] | Mapping[str, Any]],
        logger: Any = None,
    ) -> list[Result]:
        """Apply the ``state.updated`` results of one run together.

        Each update is validated first; the valid ones are written in one backend call
        (one round trip and one transaction where the engine has them), in order, so a
        later update of the same key wins. The result has one ``(ok, reason)`` per update,
        by index: a refused update is reported there and does not stop the others. If the
        backend fails, a :class:`~statekit.errors.StateBackendError` is raised and, on
        transactional backends, none of the batch is applied.
        """
        results: list[Result] = []
        writes: list[StateWrite] = []
        for update in updates:
            try:
                scope, key, value = _unpack_update(update)
                writes.append(
                    StateWrite(
                        *self._prepare_event_write(event, binding, descriptor, scope, key, value)
                    )
                )
                results.append((True, None))
            except Refusal as refusal:
                results.append(self._refuse(refusal, logger))
        if writes:
            await self._backend.set_many(writes)
        return results

    # ---- State API ----------------------------------------------------------------

    async def state_get(self, scope_key: str, state_key: str) -> Any:
        """The stored value, or ``None`` when absent or when the key is invalid."""
        try:
            scope_key, state_key = self._address(scope_key, state_key)
        except Refusal:
            return None
        value_json = await self._backend.get(scope_key, state_key)
        if value_json is None:
            return None
        value = self._decode(scope_key, state_key, value_json)
        return None if value is _INVALID else value

    async def state_get_versioned(self, scope_key: str, state_key: str) -> tuple[Any, int]:
        """``(value, version)``; ``(None, 0)`` when absent or when the key is invalid.

        Pass the version to ``state_set(..., expected_version=...)`` for a
        read-modify-write that cannot lose a concurrent update.
        """
        backend = self._versioned()
        try:
            scope_key, state_key = self._address(scope_key, state_key)
        except Refusal:
            return None, 0
        value_json, version = await backend.get_versioned(scope_key, state_key)
        if value_json is None:
            return None, 0
        value = self._decode(scope_key, state_key, value_json)
        return (None if value is _INVALID else value), version

    async def state_set(
        self,
        scope_key: str,
        state_key: str,
        value: Any,
        runner_id: str,
        binding_identity: str,
        scope: str,
        context: Mapping[str, Any] | None = None,
        logger: Any = None,
        *,
        expected_version: int | None = None,
    ) -> Result:
        """Upsert one value; ``(True, None)`` or ``(False, reason)``, nothing written on refusal.

        ``context`` may carry bot_id, workspace_id, conversation_id, thread_id, actor_type,
        actor_id, subject_type and subject_id; it is stored when the entry is created.
        With ``expected_version`` the write happens only if the stored version equals it
        (0: only if absent); otherwise ``(False, "Version conflict ...")``.
        """
        if expected_version is not None:
            self._versioned()
        try:
            scope_key, state_key = self._address(scope_key, state_key)
            if scope not in VALID_STATE_SCOPES:
                raise Refusal(f"Invalid scope: {scope}")
            if not isinstance(runner_id, str) or not isinstance(binding_identity, str):
                raise Refusal("runner_id and binding_identity must be strings")
            if expected_version is not None and (
                isinstance(expected_version, bool)
                or not isinstance(expected_version, int)
                or not 0 <= expected_version <= MAX_EXPECTED_VERSION
            ):
                raise Refusal(
                    f"expected_version must be an integer from 0 to 2**63 - 1, "
                    f"not {expected_version!r}"
                )
            if context is not None and not isinstance(context, Mapping):
                raise Refusal(f"context must be a mapping, not {type(context).__name__}")
            value_json = encode_value(value)
            extra = (
                (None,) * len(OPTIONAL_CONTEXT_FIELDS)
                if not context
                else tuple(map(context.get, OPTIONAL_CONTEXT_FIELDS))
            )
            ctx = _context(runner_id, binding_identity, scope, extra)
        except Refusal as refusal:
            return self._refuse(refusal, logger)
        try:
            await self._backend.set(scope_key, state_key, value_json, ctx, expected_version)
        except VersionConflictError as conflict:
            return False, str(conflict)
        return True, None

    async def state_delete(self, scope_key: str, state_key: str) -> bool:
        """``True`` if the entry existed and was removed; ``False`` if absent or key invalid."""
        try:
            scope_key, state_key = self._address(scope_key, state_key)
        except Refusal:
            return False
        return await self._backend.delete(scope_key, state_key)

    async def state_list(
        self,
        scope_key: str,
        prefix: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[str], bool]:
        """Keys of a scope in code-point order and whether more follow.

        ``prefix`` matches literally (``%``, ``_``, ``*``, ``?``, ``[`` are ordinary) and
        goes through the key aliases; ``limit`` is capped at 100 (0 or less returns no keys
        but still tells ``has_more``); ``after`` is an exclusive cursor: pass the last key
        of a page to get the next. Invalid arguments give ``([], False)``.
        """
        try:
            scope_key = check_scope_key(scope_key)
            prefix = check_prefix(
                normalize_state_key(prefix) if isinstance(prefix, str) else prefix
            )
            limit = check_limit(limit)
            if after is not None:
                after = check_state_key(after)
        except Refusal:
            return [], False
        return await self._backend.list_keys(scope_key, prefix, limit, after)

    def export(self) -> AsyncIterator[StateEntry]:
        """Every stored entry with its context and timestamps (for migration and backups)."""
        return self._backend.iter_entries()

    async def describe(self) -> BackendInfo:
        """What the backend is and whether its layout is ready (one round trip, read-only)."""
        return await self._backend.describe()

    async def clear_all(self) -> None:
        """Remove every entry of this store (its key prefix or table), nothing else."""
        await self._backend.clear()

    # ---- internals ----------------------------------------------------------------

    def _prepare_event_write(
        self,
        event: EventLike,
        binding: BindingLike,
        descriptor: DescriptorLike,
        scope: str,
        key: str,
        value: Any,
    ) -> tuple[str, str, str, ScopeContext]:
        """``(scope_key, state_key, value_json, context)`` of a valid update (the fields of a
        :class:`StateWrite`, which a single update does not need), else :class:`Refusal`."""
        enabled, scopes = _policy(binding)
        if not enabled:
            raise Refusal("State is disabled by binding policy")
        if scope not in VALID_STATE_SCOPES:
            raise Refusal(f"Invalid scope: {scope}")
        if scope not in scopes:
            raise Refusal(f'Scope "{scope}" not enabled by binding policy')
        state_key = check_state_key(normalize_state_key(key) if isinstance(key, str) else key)
        scope_key = build_state_scope_key(scope, event, binding, descriptor)
        if not scope_key:
            raise Refusal(f'Missing identity for scope "{scope}"')
        value_json = encode_value(value)
        return scope_key, state_key, value_json, _event_context(scope, event, binding, descriptor)

    @staticmethod
    def _address(scope_key: str, state_key: str) -> tuple[str, str]:
        key = normalize_state_key(state_key) if isinstance(state_key, str) else state_key
        return check_scope_key(scope_key), check_state_key(key)

    def _versioned(self) -> VersionedBackend:
        if Capability.VERSIONS not in self._backend.capabilities:
            raise UnsupportedCapabilityError(
                f"{type(self._backend).__name__} does not support versions "
                "(Capability.VERSIONS): conditional sets are unavailable"
            )
        return cast(VersionedBackend, self._backend)

    @staticmethod
    def _refuse(refusal: Refusal, logger: Any) -> Result:
        (logger or _log).debug("state update refused: %s", refusal)
        return False, str(refusal)

    def _decode_scope(self, scope_key: str, entries: Mapping[str, str]) -> dict[str, Any]:
        decoded: dict[str, Any] = {}
        for state_key, value_json in entries.items():
            value = self._decode(scope_key, state_key, value_json)
            if value is not _INVALID:
                decoded[state_key] = value
        return decoded

    @staticmethod
    def _decode(scope_key: str, state_key: str, value_json: str) -> Any:
        try:
            return decode_value(value_json)
        except (ValueError, RecursionError):
            # Rows written outside statekit may hold invalid JSON (or JSON nested deeper
            # than statekit accepts); the original store skipped them, and so do we, loudly.
            _log.warning("skipping undecodable JSON stored at %s / %r", scope_key, state_key)
            return _INVALID


def _unpack_update(
    update: StateUpdate | tuple[str, str, Any] | Mapping[str, Any],
) -> tuple[str, str, Any]:
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


_default_store: StateStore | None = None
_default_store_lock = threading.Lock()


def get_state_store(backend: StateBackend | None = None) -> StateStore:
    """The process-wide store, created from ``backend`` on the first call.

    Later calls return the same store and ignore ``backend``. Raises ``RuntimeError``
    if the first call has no backend.
    """
    global _default_store
    with _default_store_lock:
        if _default_store is None:
            if backend is None:
                raise RuntimeError("a backend is required for the first call to get_state_store")
            _default_store = StateStore(backend)
        return _default_store


def reset_state_store() -> None:
    """Forget the process-wide store (it is not closed: close it first if you own it)."""
    global _default_store
    with _default_store_lock:
        _default_store = None
