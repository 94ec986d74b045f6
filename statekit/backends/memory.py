"""In-process backend: the reference implementation of the contract and the test double.

Every method completes without awaiting, so under asyncio each call is atomic without a
lock. It is not shared between threads or processes, and keeps nothing across restarts.
Expired scopes are reclaimed lazily, by the first call that meets them (or a sweep).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timezone
from itertools import islice, takewhile
from typing import Any, ClassVar

from statekit.backends.base import (
    BackendInfo,
    Capability,
    ScopeContext,
    StateEntry,
    StateWrite,
    SweepResult,
)
from statekit.backends.identity import ErasureResult, IdentityFilter, ScopeInfo
from statekit.errors import ConfigurationError, StoreClosedError, VersionConflictError
from statekit.url import BackendURL


class _Entry:
    """What is kept of an entry besides its value: changed in place by each write, and
    made a :class:`StateEntry` only when exported (most entries never are)."""

    __slots__ = ("context", "created", "updated", "version")

    def __init__(self, context: ScopeContext, now: float) -> None:
        self.context = context
        self.created = self.updated = now
        self.version = 1


class _Scope:
    """One scope: its values by key, as reads hand them out (a snapshot copies the dict
    in one call), and each entry's bookkeeping under the same keys."""

    __slots__ = ("entries", "values")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.entries: dict[str, _Entry] = {}

    def exported(self, scope_key: str, expires_at: datetime | None) -> list[StateEntry]:
        values = self.values
        return [
            StateEntry(
                scope_key,
                state_key,
                values[state_key],
                entry.context,
                _utc(entry.created),
                _utc(entry.updated),
                entry.version,
                expires_at,
            )
            for state_key, entry in self.entries.items()
        ]


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


class MemoryBackend:
    """``memory://``: a dict of scopes, each a dict of entries, and a deadline per scope.

    ``clock`` (POSIX seconds, ``time.time`` by default) is the time deadlines are measured
    against; tests replace it to move time without sleeping.
    """

    capabilities = frozenset({Capability.VERSIONS, Capability.EXPIRY, Capability.ERASURE})
    #: No setting applies to process memory.
    settings_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._data: dict[str, _Scope] | None = {}
        self._deadlines: dict[str, float] = {}

    @property
    def _scopes(self) -> dict[str, _Scope]:
        """The stored scopes; every method reaches them here, so after :meth:`aclose`
        (which drops them) each raises :class:`StoreClosedError`."""
        if self._data is None:
            raise StoreClosedError("This MemoryBackend was closed with aclose()")
        return self._data

    @classmethod
    def from_url(cls, url: str | BackendURL, **options: Any) -> MemoryBackend:
        """A new, empty store for ``memory://``: each call gets its own, nothing is shared."""
        parsed = BackendURL(url)
        if parsed.scheme != "memory":
            raise ConfigurationError("A memory backend URL is 'memory://'")
        if options or "?" in parsed.unmasked():
            raise ConfigurationError("The memory backend takes no options")
        return cls()

    def _live(self, scope_key: str, now: float, ttl: float | None = None) -> _Scope | None:
        """The scope (``None`` when absent), reclaiming it once expired; a ``ttl``
        refreshes a finite deadline (the refresh on read)."""
        scope = self._scopes.get(scope_key)
        if scope is None:
            return None
        deadline = self._deadlines.get(scope_key)
        if deadline is not None:
            if now >= deadline:
                self._drop(scope_key)
                return None
            if ttl is not None:
                self._move_deadline(scope_key, now, ttl)
        return scope

    def _drop(self, scope_key: str) -> None:
        self._scopes.pop(scope_key, None)
        self._deadlines.pop(scope_key, None)

    def _move_deadline(self, scope_key: str, now: float, ttl: float | None) -> None:
        if ttl is None:
            return
        if math.isinf(ttl):
            self._deadlines.pop(scope_key, None)
        else:
            self._deadlines[scope_key] = now + ttl

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        scope = self._live(scope_key, self.clock(), ttl)
        return None if scope is None else scope.values.get(state_key)

    async def get_versioned(
        self, scope_key: str, state_key: str, ttl: float | None = None
    ) -> tuple[str | None, int]:
        scope = self._live(scope_key, self.clock(), ttl)
        entry = None if scope is None else scope.entries.get(state_key)
        if scope is None or entry is None:
            return None, 0
        return scope.values[state_key], entry.version

    async def read_scopes(
        self, scope_keys: Sequence[str], ttls: Mapping[str, float] | None = None
    ) -> dict[str, dict[str, str]]:
        now, ttls = self.clock(), ttls or {}
        found: dict[str, dict[str, str]] = {}
        for scope_key in scope_keys:
            scope = self._live(scope_key, now, ttls.get(scope_key))
            found[scope_key] = {} if scope is None else scope.values.copy()
        return found

    async def set(self, write: StateWrite, expected_version: int | None = None) -> int:
        scope_key, state_key = write.scope_key, write.state_key
        now = self.clock()
        # An expired scope is dropped: the write starts anew.
        scope = self._live(scope_key, now)
        entry = None if scope is None else scope.entries.get(state_key)
        if expected_version is not None:
            actual = 0 if entry is None else entry.version
            if actual != expected_version:
                raise VersionConflictError(scope_key, state_key, expected_version, actual)
        if scope is None:
            scope = self._scopes[scope_key] = _Scope()
        scope.values[state_key] = write.value_json
        if entry is None:
            entry = scope.entries[state_key] = _Entry(write.context, now)
        else:
            entry.updated = now
            entry.version += 1
        self._move_deadline(scope_key, now, write.ttl)
        return entry.version

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        _ = self._scopes  # refused once closed, even with nothing to write
        for write in writes:
            await self.set(write)

    async def delete(self, scope_key: str, state_key: str) -> bool:
        scope = self._live(scope_key, self.clock())
        if scope is None or scope.entries.pop(state_key, None) is None:
            return False
        del scope.values[state_key]
        if not scope.entries:
            self._drop(scope_key)
        return True

    async def list_keys(
        self, scope_key: str, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], bool]:
        scope = self._live(scope_key, self.clock())
        keys = [] if scope is None else sorted(scope.values)
        start = bisect_left(keys, prefix)
        if after is not None:
            start = max(start, bisect_right(keys, after))
        # Keys with the prefix are contiguous from bisect_left(prefix) on.
        matching = takewhile(lambda key: key.startswith(prefix), keys[start:])
        page = list(islice(matching, limit + 1))
        return page[:limit], len(page) > limit

    async def iter_entries(self) -> AsyncIterator[StateEntry]:
        for scope_key in list(self._scopes):
            scope = self._live(scope_key, self.clock())
            if scope is not None:
                for entry in scope.exported(scope_key, self._deadline_at(scope_key)):
                    yield entry

    async def scope_deadline(self, scope_key: str) -> datetime | None:
        self._live(scope_key, self.clock())
        return self._deadline_at(scope_key)

    def _deadline_at(self, scope_key: str) -> datetime | None:
        deadline = self._deadlines.get(scope_key)
        return None if deadline is None else datetime.fromtimestamp(deadline, timezone.utc)

    async def sweep_expired(self, batch_size: int = 1000) -> SweepResult:
        """Drop every expired scope (one call: nothing else runs meanwhile)."""
        now = self.clock()
        expired = [key for key, deadline in self._deadlines.items() if now >= deadline]
        scopes = self._scopes
        entries = sum(len(scopes[key].entries) for key in expired if key in scopes)
        for scope_key in expired:
            self._drop(scope_key)
        return SweepResult(scopes=len(expired), entries=entries)

    # ---- erasure and access by identity: a scan, which process memory can afford ----

    def _matching(self, identity: IdentityFilter, scope_key: str) -> ScopeInfo | None:
        """The live scope ``scope_key`` as ``identity`` finds it, or ``None``. Each entry
        keeps its first write's context; the scope matches when one of them does (they
        agree on the identity fields whenever the writes came from events)."""
        scope = self._live(scope_key, self.clock())
        if scope is None:
            return None
        for entry in scope.entries.values():
            if identity.matches(entry.context):
                return ScopeInfo(scope_key, entry.context.scope, entry.context, len(scope.entries))
        return None

    async def find_scopes(self, identity: IdentityFilter) -> AsyncIterator[ScopeInfo]:
        for scope_key in list(self._scopes):
            found = self._matching(identity, scope_key)
            if found is not None:
                yield found

    async def scope_entries(self, scope_key: str) -> list[StateEntry]:
        scope = self._live(scope_key, self.clock())
        return [] if scope is None else scope.exported(scope_key, self._deadline_at(scope_key))

    async def erase(self, identity: IdentityFilter) -> ErasureResult:
        """Every matching scope dropped in one step (nothing else runs meanwhile)."""
        found = [
            info
            for scope_key in list(self._scopes)
            if (info := self._matching(identity, scope_key)) is not None
        ]
        by_scope: dict[str, int] = {}
        for info in found:
            self._drop(info.scope_key)
            by_scope[info.scope] = by_scope.get(info.scope, 0) + 1
        return ErasureResult(len(found), sum(info.entries for info in found), by_scope)

    async def clear(self) -> None:
        self._scopes.clear()
        self._deadlines.clear()

    async def describe(self) -> BackendInfo:
        _ = self._scopes  # refused once closed, as every call
        return BackendInfo("memory", "n/a", "ok", namespace="process memory", url="memory://")

    async def aclose(self) -> None:
        self._data = None
