"""In-process backend: the reference implementation of the contract and the test double.

Every method completes without awaiting, so under asyncio each call is atomic without a
lock. It is not shared between threads or processes, and keeps nothing across restarts.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from itertools import islice, takewhile
from typing import Any, ClassVar

from statekit.backends.base import (
    BackendInfo,
    Capability,
    ScopeContext,
    StateEntry,
    StateWrite,
)
from statekit.errors import ConfigurationError, StoreClosedError, VersionConflictError
from statekit.url import BackendURL


class MemoryBackend:
    """``memory://``: a dict of scopes, each a dict of entries."""

    capabilities = frozenset({Capability.VERSIONS})
    #: No setting applies to process memory.
    settings_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self._data: dict[str, dict[str, StateEntry]] | None = {}

    @property
    def _scopes(self) -> dict[str, dict[str, StateEntry]]:
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

    async def get(self, scope_key: str, state_key: str) -> str | None:
        entry = self._scopes.get(scope_key, {}).get(state_key)
        return None if entry is None else entry.value_json

    async def get_versioned(self, scope_key: str, state_key: str) -> tuple[str | None, int]:
        entry = self._scopes.get(scope_key, {}).get(state_key)
        return (None, 0) if entry is None else (entry.value_json, entry.version)

    async def read_scopes(self, scope_keys: Sequence[str]) -> dict[str, dict[str, str]]:
        scopes = self._scopes
        return {
            scope_key: {k: e.value_json for k, e in scopes.get(scope_key, {}).items()}
            for scope_key in scope_keys
        }

    async def set(
        self,
        scope_key: str,
        state_key: str,
        value_json: str,
        context: ScopeContext,
        expected_version: int | None = None,
    ) -> int:
        entries = self._scopes.setdefault(scope_key, {})
        current = entries.get(state_key)
        if expected_version is not None:
            actual = 0 if current is None else current.version
            if actual != expected_version:
                raise VersionConflictError(scope_key, state_key, expected_version, actual)
        now = datetime.now(timezone.utc)
        if current is None:
            entry = StateEntry(scope_key, state_key, value_json, context, now, now, 1)
        else:
            entry = replace(
                current, value_json=value_json, updated_at=now, version=current.version + 1
            )
        entries[state_key] = entry
        return entry.version

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        _ = self._scopes  # refused once closed, even with nothing to write
        for write in writes:
            await self.set(write.scope_key, write.state_key, write.value_json, write.context)

    async def delete(self, scope_key: str, state_key: str) -> bool:
        entries = self._scopes.get(scope_key)
        if entries is None or entries.pop(state_key, None) is None:
            return False
        if not entries:
            del self._scopes[scope_key]
        return True

    async def list_keys(
        self, scope_key: str, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], bool]:
        keys = sorted(self._scopes.get(scope_key, {}))
        start = bisect_left(keys, prefix)
        if after is not None:
            start = max(start, bisect_right(keys, after))
        # Keys with the prefix are contiguous from bisect_left(prefix) on.
        matching = takewhile(lambda key: key.startswith(prefix), keys[start:])
        page = list(islice(matching, limit + 1))
        return page[:limit], len(page) > limit

    async def iter_entries(self) -> AsyncIterator[StateEntry]:
        for entries in list(self._scopes.values()):
            for entry in list(entries.values()):
                yield entry

    async def clear(self) -> None:
        self._scopes.clear()

    async def describe(self) -> BackendInfo:
        _ = self._scopes  # refused once closed, as every call
        return BackendInfo("memory", "n/a", "ok", namespace="process memory", url="memory://")

    async def aclose(self) -> None:
        self._data = None
