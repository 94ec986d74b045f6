"""The policy and validation layer, written once above every backend.

:class:`StateStore` keeps the public methods and return conventions of the original
SQL-only persistent state store (``(ok, error_message)`` tuples, ``None`` for a missing
value, ``(keys, has_more)`` for listings) and adds what a production store needs:
conditional sets, batch updates, export and import, and typed backend errors. It is the
only door to a backend: the CLI and the benchmarks go through it too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol, cast, runtime_checkable

from statekit import transfer
from statekit.backends.base import (
    BackendInfo,
    Capability,
    StateBackend,
    StateEntry,
    StateWrite,
    VersionedBackend,
)
from statekit.errors import StoreClosedError, UnsupportedCapabilityError, VersionConflictError
from statekit.events import (
    StateUpdate,
    UpdateLike,
    binding_policy,
    enabled_scope_keys,
    prepare_event_write,
    unpack_update,
)
from statekit.scope import (
    VALID_STATE_SCOPES,
    BindingLike,
    DescriptorLike,
    EventLike,
    normalize_state_key,
)
from statekit.transfer import ImportResult
from statekit.validation import (
    Refusal,
    check_context_mapping,
    check_expected_version,
    check_limit,
    check_owner,
    check_prefix,
    check_scope,
    check_scope_key,
    check_state_key,
    checked_context,
    decode_value,
    encode_value,
)

__all__ = ["ImportResult", "StateStore", "StateUpdate", "get_state_store", "reset_state_store"]

_log = logging.getLogger("statekit")


@runtime_checkable
class _SchemaOwner(Protocol):
    """A backend with a schema to create or upgrade (SQL): see
    :meth:`StateStore.create_schema`."""

    async def upgrade_schema(self) -> list[str]: ...


_INVALID = object()  # a stored value that is not valid JSON

Result = tuple[bool, str | None]


def _empty_snapshot() -> dict[str, dict[str, Any]]:
    return {scope: {} for scope in VALID_STATE_SCOPES}


class StateStore:
    """Host-owned runner state over any :class:`~statekit.backends.base.StateBackend`.

    Refused input never raises and never writes: setters return ``(False, message)``,
    readers return ``None`` / ``False`` / ``([], False)``. Backend faults raise a
    :class:`~statekit.errors.StateBackendError` subclass. Use as ``async with`` or call
    :meth:`aclose` to release the backend's connections; after it, every method raises
    :class:`~statekit.errors.StoreClosedError`.
    """

    def __init__(self, backend: StateBackend) -> None:
        self._backend = backend
        self._closed = False

    @property
    def backend(self) -> StateBackend:
        """The backend this store runs on, for a host that owns its lifecycle or needs an
        engine-specific call. statekit itself only goes through the store's methods."""
        return self._backend

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The backend's optional features. Without :attr:`Capability.VERSIONS`,
        :meth:`state_get_versioned` and ``state_set(..., expected_version=...)`` raise
        :class:`~statekit.errors.UnsupportedCapabilityError`: check here to choose a path."""
        return self._backend.capabilities

    async def __aenter__(self) -> StateStore:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backend (idempotent).

        Every later call of this store raises :class:`~statekit.errors.StoreClosedError`,
        refused input and disabled policies included: a call after ``aclose()`` is a bug
        in the host (a module-level store closed at shutdown while a task still runs),
        never a reason to reconnect. Calls already under way end as the backend makes
        them: each completes, or raises ``StoreClosedError`` (every built-in backend).
        """
        self._closed = True
        await self._backend.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("This StateStore was closed with aclose(); open a new one")

    # ---- event-driven API -------------------------------------------------------

    async def build_snapshot_from_event(
        self, event: EventLike, binding: BindingLike, descriptor: DescriptorLike
    ) -> dict[str, dict[str, Any]]:
        """Every enabled scope's state as four dicts, read in one backend round trip.

        A disabled policy gives four empty dicts without I/O. The conversation scope is
        seeded with ``external.conversation_id`` from the event when that key is not stored.
        """
        self._check_open()
        snapshot = _empty_snapshot()
        enabled, scopes = binding_policy(binding)
        if not enabled:
            return snapshot
        wanted = enabled_scope_keys(scopes, event, binding, descriptor)
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
        self._check_open()
        try:
            write = prepare_event_write(event, binding, descriptor, scope, key, value)
        except Refusal as refusal:
            return self._refuse(refusal, logger)
        await self._backend.set(*write)
        return True, None

    async def apply_updates_from_event(
        self,
        event: EventLike,
        binding: BindingLike,
        descriptor: DescriptorLike,
        updates: Iterable[UpdateLike],
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
        self._check_open()
        results: list[Result] = []
        writes: list[StateWrite] = []
        for update in updates:
            try:
                scope, key, value = unpack_update(update)
                writes.append(
                    StateWrite(*prepare_event_write(event, binding, descriptor, scope, key, value))
                )
                results.append((True, None))
            except Refusal as refusal:
                results.append(self._refuse(refusal, logger))
        if writes:
            await self._backend.set_many(writes)
        return results

    # ---- State API ----------------------------------------------------------------

    async def read_scope(self, scope_key: str) -> dict[str, Any]:
        """Every entry of one scope, decoded, its keys in code-point order (one round trip).

        What a snapshot holds for the scope, addressed by its key: no binding policy and
        no seeded ``external.conversation_id``. ``{}`` when the scope is empty or the key
        invalid. A stored value that is not valid JSON is skipped with a warning on the
        ``statekit`` logger, as in snapshots.
        """
        self._check_open()
        try:
            scope_key = check_scope_key(scope_key)
        except Refusal:
            return {}
        stored = await self._backend.read_scopes([scope_key])
        entries = stored.get(scope_key, {})
        return self._decode_scope(scope_key, dict(sorted(entries.items())))

    async def state_get(self, scope_key: str, state_key: str) -> Any:
        """The stored value, or ``None`` when absent or when the key is invalid."""
        self._check_open()
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
        self._check_open()
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
        self._check_open()
        if expected_version is not None:
            self._versioned()
        try:
            scope_key, state_key = self._address(scope_key, state_key)
            scope = check_scope(scope)
            runner_id, binding_identity = check_owner(runner_id, binding_identity)
            if expected_version is not None:
                expected_version = check_expected_version(expected_version)
            extra = check_context_mapping(context)
            value_json = encode_value(value)
            ctx = checked_context(runner_id, binding_identity, scope, extra)
        except Refusal as refusal:
            return self._refuse(refusal, logger)
        try:
            await self._backend.set(scope_key, state_key, value_json, ctx, expected_version)
        except VersionConflictError as conflict:
            return False, str(conflict)
        return True, None

    async def state_delete(self, scope_key: str, state_key: str) -> bool:
        """``True`` if the entry existed and was removed; ``False`` if absent or key invalid."""
        self._check_open()
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
        self._check_open()
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
        self._check_open()
        return self._backend.iter_entries()

    async def import_entries(
        self,
        entries: AsyncIterable[StateEntry] | Iterable[StateEntry],
        *,
        batch_size: int = 500,
        dry_run: bool = False,
    ) -> ImportResult:
        """Write exported entries (another store's :meth:`export`) with their context.

        Each entry gets the checks of a write (:func:`~statekit.validation.check_entry`;
        its value is encoded again); a refused one is counted in ``skipped`` (logged at
        debug level) and the others go on. Valid ones are upserted ``batch_size`` at a
        time, so a re-run after an interruption is harmless; versions and timestamps are
        this store's own. ``dry_run`` checks and counts, writing nothing. A backend fault
        raises :class:`~statekit.errors.StateBackendError`, earlier batches staying
        written. Memory: one batch and one counter per scope. ``batch_size < 1`` raises
        ``ValueError``.
        """
        self._check_open()
        return await transfer.import_entries(self._backend, entries, batch_size, dry_run)

    async def count_entries(self, scope_keys: Iterable[str]) -> dict[str, int]:
        """How many entries each given scope holds, undecodable ones included; an invalid
        scope key counts 0 without I/O.

        The backend contract has no count: scopes are read with their values, 100 per
        round trip. Meant for checks such as ``statekit migrate``'s, not for a hot path.
        """
        self._check_open()
        return await transfer.count_entries(self._backend, scope_keys)

    async def describe(self) -> BackendInfo:
        """What the backend is and whether its layout is ready (one round trip, read-only)."""
        self._check_open()
        return await self._backend.describe()

    async def create_schema(self) -> list[str]:
        """Create what the backend stores entries in, or bring a table found in place up
        to statekit's layout; safe to repeat. Returns what was changed (``[]``: nothing).

        On SQL: the table and its indexes, and on an existing table (the original
        store's) the missing ``version`` column, unique key, widths and collation, keeping
        every row. A no-op on backends without a schema (memory, Redis). Run it
        (``statekit init``) ahead of a deploy whose stores open with
        ``create_schema=False``, or whose database role may not create tables. A backend
        that has a schema provides it as an ``async upgrade_schema() -> list[str]``
        method; faults raise :class:`~statekit.errors.StateBackendError`.
        """
        if isinstance(self._backend, _SchemaOwner):
            return await self._backend.upgrade_schema()
        return []

    async def clear_all(self) -> None:
        """Remove every entry of this store (its key prefix or table), nothing else."""
        self._check_open()
        await self._backend.clear()

    # ---- internals ----------------------------------------------------------------

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
            _log.warning(
                "skipped %r in %s: undecodable JSON (invalid or nested too deep)",
                state_key,
                scope_key,
            )
            return _INVALID


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
