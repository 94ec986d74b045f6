"""The policy and validation layer, written once above every backend.

:class:`StateStore` keeps the public methods and return conventions of the original
SQL-only persistent state store (``(ok, error_message)`` tuples, ``None`` for a missing
value, ``(keys, has_more)`` for listings) and adds what a production store needs:
conditional sets, batch updates, per-scope expiry (:mod:`statekit.expiry`), export and
import and the other whole-store operations (:mod:`statekit.maintenance`), access and
erasure requests by identity (:mod:`statekit.access`; both are its base classes), and
typed backend errors. It is the only door to a backend: the CLI and the benchmarks go
through it too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, cast

from statekit import logs
from statekit.access import StoreAccess
from statekit.backends.base import (
    Capability,
    StateBackend,
    StateWrite,
    VersionedBackend,
)
from statekit.decoding import decode_scope, decode_stored
from statekit.errors import StoreClosedError, UnsupportedCapabilityError, VersionConflictError
from statekit.events import (
    StateUpdate,
    UpdateLike,
    binding_policy,
    enabled_scope_keys,
    prepare_event_write,
    unpack_update,
)
from statekit.expiry import Duration, ExpiryPolicy, StoreExpiry
from statekit.scope import (
    VALID_STATE_SCOPES,
    BindingLike,
    DescriptorLike,
    EventLike,
    normalize_state_key,
)
from statekit.telemetry import Telemetry, instrument_store
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
    encode_value,
)

__all__ = ["ImportResult", "StateStore", "StateUpdate", "get_state_store", "reset_state_store"]

Result = tuple[bool, str | None]


def _scope_name(scope: object) -> str | None:
    """The scope for a refusal's record: one of the four names, never the caller's text."""
    return scope if isinstance(scope, str) and scope in VALID_STATE_SCOPES else None


def _empty_snapshot() -> dict[str, dict[str, Any]]:
    return {scope: {} for scope in VALID_STATE_SCOPES}


class StateStore(StoreAccess):
    """Host-owned runner state over any :class:`~statekit.backends.base.StateBackend`.

    Refused input never raises and never writes: setters return ``(False, message)``,
    readers return ``None`` / ``False`` / ``([], False)``. Backend faults raise a
    :class:`~statekit.errors.StateBackendError` subclass. Use as ``async with`` or call
    :meth:`aclose` to release the backend's connections; after it, every method raises
    :class:`~statekit.errors.StoreClosedError`.

    ``expiry`` gives scope names a lifetime (seconds, ``timedelta`` or ``"30d"``-style
    text, see :mod:`statekit.expiry`): each accepted write moves its scope's deadline to
    now + that lifetime, and with ``refresh_on_read`` snapshots, ``read_scope`` and gets
    do too. ``sweep_interval`` (seconds) runs :meth:`sweep_expired` in the background,
    in the loop of the store's first call, until :meth:`aclose`. Any of them on a backend
    without :attr:`Capability.EXPIRY`, an unknown scope name or a bad lifetime raise
    :class:`~statekit.errors.ConfigurationError`.

    ``telemetry`` (on by default) makes a span and a duration measurement per operation
    when the ``otel`` extra is installed and an OpenTelemetry SDK configured (see
    :mod:`statekit.telemetry`); ``False`` leaves the methods unwrapped.
    """

    def __init__(
        self,
        backend: StateBackend,
        *,
        expiry: Mapping[str, Duration | None] | ExpiryPolicy | None = None,
        refresh_on_read: bool = False,
        sweep_interval: Duration | None = None,
        telemetry: bool | Telemetry = True,
    ) -> None:
        self._backend = backend
        self._closed = False
        self._expiry = StoreExpiry(backend, expiry, refresh_on_read, sweep_interval)
        instrument_store(self, telemetry)

    @property
    def backend(self) -> StateBackend:
        """The backend this store runs on, for a host that owns its lifecycle or needs an
        engine-specific call. statekit itself only goes through the store's methods."""
        return self._backend

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The backend's optional features. Without :attr:`Capability.VERSIONS`,
        :meth:`state_get_versioned` and ``state_set(..., expected_version=...)`` raise
        :class:`~statekit.errors.UnsupportedCapabilityError`, as ``state_set(...,
        expiry=...)`` does without :attr:`Capability.EXPIRY` (and the store's expiry
        options are a :class:`~statekit.errors.ConfigurationError`): check here to
        choose a path."""
        return self._backend.capabilities

    @property
    def expiry(self) -> ExpiryPolicy:
        """The lifetime of each scope name (those without one are left out)."""
        return self._expiry.policy

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
        The background sweeper, if any, is stopped and awaited first.
        """
        self._closed = True
        if self._expiry.sweeper is not None:
            await self._expiry.sweeper.stop()
        await self._backend.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("This StateStore was closed with aclose(); open a new one")
        if self._expiry.sweeper is not None:
            self._expiry.sweeper.start()

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
            stored = await self._expiry.read_scopes(list(wanted.values()))
            for scope, scope_key in wanted.items():
                snapshot[scope] = decode_scope(scope_key, stored.get(scope_key, {}))
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
            return self._refuse(refusal, logger, "apply_update_from_event", scope)
        await self._backend.set(StateWrite(*write, ttl=self._expiry.policy.for_scope(scope)))
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
            scope = None
            try:
                scope, key, value = unpack_update(update)
                write = prepare_event_write(event, binding, descriptor, scope, key, value)
                writes.append(StateWrite(*write, ttl=self._expiry.policy.for_scope(scope)))
                results.append((True, None))
            except Refusal as refusal:
                results.append(self._refuse(refusal, logger, "apply_updates_from_event", scope))
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
        stored = await self._expiry.read_scopes([scope_key])
        entries = stored.get(scope_key, {})
        return decode_scope(scope_key, dict(sorted(entries.items())))

    async def state_get(self, scope_key: str, state_key: str) -> Any:
        """The stored value, or ``None`` when absent or when the key is invalid."""
        self._check_open()
        try:
            scope_key, state_key = self._address(scope_key, state_key)
        except Refusal:
            return None
        value_json = await self._expiry.get(scope_key, state_key)
        return None if value_json is None else decode_stored(scope_key, state_key, value_json)

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
        value_json, version = await self._expiry.get_versioned(backend, scope_key, state_key)
        if value_json is None:
            return None, 0
        return decode_stored(scope_key, state_key, value_json), version

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
        expiry: Duration | None = None,
    ) -> Result:
        """Upsert one value; ``(True, None)`` or ``(False, reason)``, nothing written on refusal.

        ``context`` may carry bot_id, workspace_id, conversation_id, thread_id, actor_type,
        actor_id, subject_type and subject_id; it is stored when the entry is created.
        With ``expected_version`` the write happens only if the stored version equals it
        (0: only if absent); otherwise ``(False, "Version conflict ...")``. ``expiry``
        (a lifetime, ``"never"`` included) replaces the scope's configured one for this
        write. Either on a backend without the capability raises
        :class:`~statekit.errors.UnsupportedCapabilityError`.
        """
        self._check_open()
        if expected_version is not None:
            self._versioned()
        try:
            ttl = None if expiry is None else self._expiry.override(expiry)
            scope_key, state_key = self._address(scope_key, state_key)
            scope = check_scope(scope)
            runner_id, binding_identity = check_owner(runner_id, binding_identity)
            if expected_version is not None:
                expected_version = check_expected_version(expected_version)
            extra = check_context_mapping(context)
            value_json = encode_value(value)
            ctx = checked_context(runner_id, binding_identity, scope, extra)
        except Refusal as refusal:
            return self._refuse(refusal, logger, "state_set", scope)
        if expiry is None:
            ttl = self._expiry.policy.for_scope(scope)
        try:
            await self._backend.set(
                StateWrite(scope_key, state_key, value_json, ctx, ttl), expected_version
            )
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
    def _refuse(refusal: Refusal, logger: Any, operation: str, scope: object) -> Result:
        # The record holds the class, never the message: the message can quote a key.
        logs.refusal(logger, refusal.reason, operation, _scope_name(scope))
        return False, str(refusal)


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
