"""The SQL backend's reads: each one statement at the clock's time, which skips the
entries of expired scopes (see :class:`.statements.Statements`); with ``ttl`` (a refresh
on read) the scopes' deadlines are moved first, on the same connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from statekit.backends.base import StateEntry
from statekit.backends.sql import export
from statekit.backends.sql.parts import Parts
from statekit.backends.sql.statements import DriverStatement, prefix_successor

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from statekit.backends.sql.gateway import Gateway


class Reads(Parts):
    """``get``, ``get_versioned``, ``read_scopes``, ``scope_deadline``, ``list_keys`` and
    ``iter_entries`` of :class:`~statekit.backends.sql.SQLBackend`."""

    _engine: AsyncEngine
    _gateway: Gateway

    async def _read(
        self,
        statement: DriverStatement,
        params: dict[str, Any],
        what: str,
        ttls: Mapping[str, float] | None,
    ) -> Sequence[Any]:
        """A read at the clock's time; ``ttls`` refreshes those scopes' deadlines first."""
        now = params["now"] = self.clock()
        if not ttls:
            return await self._rows(statement, params, what, read=True, coalesce=True)
        refresh = self._require_expiry().refreshed(
            ttls, now, statement, params, self.deadline_tolerance
        )
        rows: Sequence[Any] = await self._program(refresh, what, transaction=False)
        return rows

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        if not self._ready:
            await self._prepare()
        params = {"scope_key": scope_key, "state_key": state_key}
        ttls = None if ttl is None else {scope_key: ttl}
        rows = await self._read(self._statements.get, params, "get", ttls)
        return rows[0][0] if rows else None

    async def get_versioned(
        self, scope_key: str, state_key: str, ttl: float | None = None
    ) -> tuple[str | None, int]:
        if not self._ready:
            await self._prepare()
        self._require_versions()
        params = {"scope_key": scope_key, "state_key": state_key}
        ttls = None if ttl is None else {scope_key: ttl}
        rows = await self._read(self._statements.get_versioned, params, "get", ttls)
        return (rows[0][0], rows[0][1]) if rows else (None, 0)

    async def read_scopes(
        self, scope_keys: Sequence[str], ttls: Mapping[str, float] | None = None
    ) -> dict[str, dict[str, str]]:
        snapshot: dict[str, dict[str, str]] = {scope_key: {} for scope_key in scope_keys}
        if not snapshot:
            return snapshot
        if not self._ready:
            await self._prepare()
        params: dict[str, Any] = {f"scope_key_{i}": key for i, key in enumerate(snapshot)}
        statement = self._statements.snapshot(len(params))
        wanted = {key: ttl for key, ttl in (ttls or {}).items() if key in snapshot}
        rows = await self._read(statement, params, "read a snapshot", wanted)
        for scope_key, state_key, value_json in rows:
            snapshot[scope_key][state_key] = value_json
        return snapshot

    async def scope_deadline(self, scope_key: str) -> datetime | None:
        if not self._ready:
            await self._prepare()
        if self._expiry is None:
            return None
        params = {"scope_key": scope_key, "now": self.clock()}
        rows = await self._rows(self._expiry.sql.deadline, params, "read a deadline", read=True)
        return export.deadline(rows[0][0]) if rows else None

    async def list_keys(
        self, scope_key: str, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], bool]:
        if not self._ready:
            await self._prepare()
        params: dict[str, Any] = {"scope_key": scope_key, "limit": limit + 1}
        params["now"] = self.clock()
        low: str | None = None
        if after is not None and after >= prefix:
            low, params["low"] = ">", after
        elif prefix:
            low, params["low"] = ">=", prefix
        high = prefix_successor(prefix) if prefix else None
        if high is not None:
            params["high"] = high
        statement = self._statements.lists[(low, high is not None)]
        rows = await self._rows(statement, params, "list keys", read=True)
        keys = [row[0] for row in rows]
        return keys[:limit], len(keys) > limit

    async def iter_entries(self) -> AsyncIterator[StateEntry]:
        if not self._ready:
            await self._prepare()
        source = export.pages if self._shared_connection else export.stream
        entries = source(
            self._engine, self._gateway, self._statements, self.clock(), self._check_open
        )
        async for entry in entries:
            yield entry
