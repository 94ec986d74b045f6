"""The whole-store operations of :class:`statekit.StateStore`: export and import, counts,
the backend's description and schema, expiry introspection and sweeping, clearing.

They serve the host's tooling (``statekit migrate``, ``init``, ``doctor``, ``sweep``)
rather than a run, and sit in this base class so that ``store.py`` holds the per-call API.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from datetime import datetime
from typing import Protocol, runtime_checkable

from statekit import transfer
from statekit.backends.base import BackendInfo, StateBackend, StateEntry, SweepResult
from statekit.expiry import StoreExpiry
from statekit.transfer import ImportResult
from statekit.validation import Refusal, check_scope_key


@runtime_checkable
class _SchemaOwner(Protocol):
    """A backend with a schema to create or upgrade (SQL): see
    :meth:`StateStore.create_schema`."""

    async def upgrade_schema(self) -> list[str]: ...


class StoreMaintenance:
    """Base of :class:`~statekit.StateStore` (see the module docstring)."""

    _backend: StateBackend
    _expiry: StoreExpiry

    def _check_open(self) -> None:
        raise NotImplementedError  # pragma: no cover - StateStore's

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
        this store's own. ``dry_run`` checks and counts, writing nothing.

        An entry whose scope has a deadline (``expires_at``) is written with the time
        left until it, by this backend's clock, so the scope keeps its deadline; one past
        its deadline is counted in ``expired`` and not written. Such an entry on a backend
        without :attr:`~statekit.Capability.EXPIRY` raises
        :class:`~statekit.errors.UnsupportedCapabilityError` before it or anything after
        it is written (a dry run finds it writing nothing). The store's own ``expiry`` is
        not applied: imported scopes keep the deadlines they had. A backend fault
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
        every row. On Redis: the identity index entries of scopes an earlier version wrote
        without them. A no-op on memory. Run it
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

    async def scope_expiry(self, scope_key: str) -> datetime | None:
        """When the scope ``scope_key`` expires (UTC), or ``None``: it has no deadline, is
        absent or has expired, the key is invalid, or the backend has no expiry.

        A read: it never moves the deadline, even with ``refresh_on_read``."""
        self._check_open()
        try:
            scope_key = check_scope_key(scope_key)
        except Refusal:
            return None
        return await self._expiry.scope_deadline(scope_key)

    async def sweep_expired(self, batch_size: int = 1000) -> SweepResult:
        """Reclaim the storage of expired scopes, ``batch_size`` entries per short
        transaction (writers are never held up long), and say what was removed.

        Reads never depend on it: an expired scope is absent either way. Redis reclaims
        by itself (zeros); a backend without expiry has nothing to sweep (zeros).
        ``batch_size < 1`` raises ``ValueError``."""
        self._check_open()
        return await self._expiry.sweep(batch_size)
