"""Erasure and access requests on the SQL backend: ``find_scopes``, ``scope_entries`` and
``erase`` (see :mod:`statekit.backends.identity` for the rule, :mod:`.identity_sql` for
the statements).

Every entry row carries its scope's context, so a scope is found by its rows: the
filter's fields as equality predicates on the identity indexes
(:data:`.schema.IDENTITY_INDEXES`), a batch of scopes at a time in ``scope_key`` order
(the next batch starts after the last key), so the cost follows what matches and memory
stays bounded. Each scope found is checked again with
:meth:`~statekit.backends.identity.IdentityFilter.matches`.

An erase deletes one batch of scopes per transaction: the batch is selected, the scopes'
deadline rows locked (PostgreSQL, in the order writers take them: a scope's row before
its entries'), every entry of those scopes still matching the filter deleted, and the
deadline rows of the scopes left empty deleted. A scope is never half-erased: an entry
written into it before the delete ran is deleted with the rest; one written after is a
write made during the erase, and starts the scope anew. Batches follow each other in key
order until one comes back short, so an erase ends even while writers keep writing; a
scope that existed when the erase started is reached, as its key is passed. The entries
of a matching scope that has expired are deleted too (they are personal data all the
same) but neither found nor counted: expired scopes are absent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from statekit.backends.base import ScopeContext, StateEntry
from statekit.backends.identity import ErasureResult, IdentityFilter, ScopeInfo
from statekit.backends.sql import export
from statekit.backends.sql.driver import Session
from statekit.backends.sql.faults import TRANSLATED, translate
from statekit.backends.sql.identity_sql import (
    IDENTITY_BATCH_SIZE,
    IdentitySQL,
    field_parameter,
)
from statekit.backends.sql.parts import Parts
from statekit.backends.sql.schema import CONTEXT_COLUMNS
from statekit.errors import UnsupportedCapabilityError

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncEngine

    from statekit.backends.sql.gateway import Gateway

_CONTEXT_END = 2 + len(CONTEXT_COLUMNS)


def _found(row: Sequence[Any], identity: IdentityFilter) -> tuple[ScopeInfo, bool] | None:
    """A row of :meth:`.identity_sql.IdentitySQL.batch` as the scope it found and whether
    that scope is live; ``None`` when the filter does not match it after all."""
    context = ScopeContext(*row[2:_CONTEXT_END])
    if not identity.matches(context):
        return None
    info = ScopeInfo(row[0], context.scope, context, int(row[1]))
    return info, bool(row[_CONTEXT_END]) and info.entries > 0


class Erasure(Parts):
    """``find_scopes``, ``scope_entries`` and ``erase`` of
    :class:`~statekit.backends.sql.SQLBackend`."""

    _engine: AsyncEngine
    _gateway: Gateway
    _identity: IdentitySQL | None
    _table: Table

    def _require_erasure(self) -> IdentitySQL:
        if self._identity is None:
            raise UnsupportedCapabilityError(
                f"{self._table.fullname} lacks its identity indexes: erasure and access "
                "requests are unavailable (`statekit init` adds them)"
            )
        return self._identity

    def _params(self, identity: IdentityFilter, after: str) -> dict[str, Any]:
        params: dict[str, Any] = {field_parameter(k): v for k, v in identity.fields.items()}
        params.update(after=after, limit=IDENTITY_BATCH_SIZE, now=self.clock())
        return params

    async def find_scopes(self, identity: IdentityFilter) -> AsyncIterator[ScopeInfo]:
        if not self._ready:
            await self._prepare()
        sql = self._require_erasure()
        fields = tuple(sorted(identity.fields))
        for scope in identity.scope_names():
            statement = sql.batch(scope, fields)
            after = ""
            while True:
                params = self._params(identity, after)
                rows = await self._rows(statement, params, "find scopes", read=True)
                for row in rows:
                    found = _found(row, identity)
                    if found is not None and found[1]:
                        yield found[0]
                if len(rows) < IDENTITY_BATCH_SIZE:
                    break
                after = rows[-1][0]

    async def scope_entries(self, scope_key: str) -> list[StateEntry]:
        if not self._ready:
            await self._prepare()
        sql = self._require_erasure()
        params = {"scope_key": scope_key, "now": self.clock()}
        try:
            async with self._gateway.guard(), self._engine.connect() as conn:
                rows = (await conn.execute(sql.scope_export, params)).all()
        except TRANSLATED as exc:
            raise translate(exc, "read a scope's entries", address=self._gateway.address) from exc
        return [export.entry(row) for row in rows]

    async def erase(self, identity: IdentityFilter) -> ErasureResult:
        if not self._ready:
            await self._prepare()
        sql = self._require_erasure()
        scopes = entries = 0
        for scope in identity.scope_names():
            after: str | None = ""
            while after is not None:
                batch = self._erase_batch(sql, identity, scope, after)
                after, erased = await self._program(batch, "erase scopes", transaction=True)
                scopes, entries = scopes + erased.scopes, entries + erased.entries
        return ErasureResult(scopes, entries)

    def _erase_batch(
        self, sql: IdentitySQL, identity: IdentityFilter, scope: str, after: str
    ) -> Any:
        """One batch of an erase (see the module docstring), as a program for one
        transaction: it returns the key the next batch starts after (``None``: this was
        the last) and what it erased."""
        fields = tuple(sorted(identity.fields))
        params = self._params(identity, after)
        select, drop = sql.batch(scope, fields), sql.drop_entries(scope, fields)
        postgres = sql.postgres

        def run(session: Session) -> tuple[str | None, ErasureResult]:
            rows = session.fetch(select.sql, select.arguments(params))
            found = [f for f in (_found(row, identity) for row in rows) if f is not None]
            live = {info.scope_key for info, alive in found if alive}
            keys = [info.scope_key for info, _ in found]
            erased = ErasureResult()
            if keys:
                params["keys"] = keys if postgres else json.dumps(keys)
                if postgres and sql.expiry:
                    session.fetch(sql.lock_scopes.sql, sql.lock_scopes.arguments(params))
                deleted = session.fetch(drop.sql, drop.arguments(params))
                if sql.expiry:
                    session.fetch(sql.drop_scopes.sql, sql.drop_scopes.arguments(params))
                gone = [(key, present) for key, present in deleted if key in live and present]
                erased = ErasureResult(len({key for key, _ in gone}), len(gone))
            last = rows[-1][0] if len(rows) == IDENTITY_BATCH_SIZE else None
            return last, erased

        return run
