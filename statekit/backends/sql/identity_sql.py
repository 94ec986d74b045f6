"""The statements of erasure and access requests: scopes found by identity, a batch at a
time, and a batch's entries and deadlines deleted.

One statement per scope name and set of filtered fields, built on first use and kept.
The scope name is written into the SQL as a literal (one of four constants, never a
caller's text): the partial identity indexes hold one scope name's rows, and a planner
only uses such an index when the query names the same scope (PostgreSQL cannot prove it
from a parameter of a prepared statement). Every other value is a parameter.

A batch is keyset-paginated by ``scope_key``: the next one starts after the last key of
the previous, so a find reads what matches and nothing twice, whatever the table holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, Table, bindparam
from sqlalchemy.engine import Dialect

from statekit.backends.sql.expiry_sql import driver_sql
from statekit.backends.sql.schema import CONTEXT_COLUMNS, TableShape, scope_predicate
from statekit.backends.sql.statements import DriverStatement

#: Scopes per batch of a find or an erase (one transaction per batch of an erase).
IDENTITY_BATCH_SIZE = 100


def field_parameter(field: str) -> str:
    """The parameter name of a filtered field's value."""
    return f"f_{field}"


class IdentitySQL:
    """The statements of one backend over ``table`` and ``scopes`` (its scopes table,
    used only when ``shape.expiry``); ``export`` is the backend's export (every entry
    with its context and deadline), which :attr:`scope_export` narrows to one scope."""

    def __init__(
        self, table: Table, scopes: Table, dialect: Dialect, shape: TableShape, export: Select[Any]
    ) -> None:
        quote = dialect.identifier_preparer
        self._dialect = dialect
        self.postgres = dialect.name == "postgresql"
        self.expiry = shape.expiry
        #: A scope's entries (parameters ``scope_key`` and ``now``), through SQLAlchemy.
        self.scope_export = export.where(table.c.scope_key == bindparam("scope_key")).order_by(
            table.c.state_key
        )
        self._t = quote.format_table(table)
        self._s = quote.format_table(scopes)
        self._batches: dict[tuple[str, tuple[str, ...]], DriverStatement] = {}
        self._drops: dict[tuple[str, tuple[str, ...]], DriverStatement] = {}
        keys = self.among()
        s, t = self._s, self._t
        #: Lock the scopes rows of ``keys`` (PostgreSQL), in the order writers take them:
        #: a scope's row before its entries'.
        self.lock_scopes = self._sql(
            f"SELECT scope_key FROM {s} WHERE scope_key {keys} ORDER BY scope_key FOR UPDATE"
        )
        #: The deadlines of ``keys`` whose scopes have no entry left.
        self.drop_scopes = self._sql(
            f"DELETE FROM {s} WHERE scope_key {keys} "
            f"AND NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.scope_key = {s}.scope_key)"
        )

    def _sql(self, sql: str, order: Sequence[str] = ()) -> DriverStatement:
        return driver_sql(sql, self._dialect, order)

    def among(self) -> str:
        """``IN`` the list parameter ``keys`` (a list on PostgreSQL, JSON text on SQLite,
        so one statement serves any batch)."""
        if self.postgres:
            return "= ANY(:keys::varchar[])"
        return "IN (SELECT value FROM json_each(:keys))"

    def _where(self, scope: str, fields: tuple[str, ...]) -> str:
        """The filter: the scope name (literally) and each field equal to its parameter."""
        terms = [scope_predicate(scope)]
        terms += [f"{name} = :{field_parameter(name)}" for name in fields]
        return " AND ".join(terms)

    def batch(self, scope: str, fields: tuple[str, ...]) -> DriverStatement:
        """The next ``limit`` scopes named ``scope`` whose ``fields`` equal the filter's,
        after the key ``after``, in key order: ``scope_key``, the count of entries with a
        value, the context of the scope's first entry, and whether the scope is live at
        ``now`` (1) or has expired (0). Expired scopes are returned too, so the next batch
        starts after them."""
        key = (scope, fields)
        found = self._batches.get(key)
        if found is not None:
            return found
        t, s = self._t, self._s
        live = (
            f"CASE WHEN EXISTS (SELECT 1 FROM {s} WHERE {s}.scope_key = g.scope_key "
            f"AND {s}.expires_at <= :now) THEN 0 ELSE 1 END"
            if self.expiry
            else "1"
        )
        context = ", ".join(f"e.{name}" for name in CONTEXT_COLUMNS)
        sql = (
            f"WITH g AS (SELECT scope_key, count(value_json) AS entries, min(id) AS first "
            f"FROM {t} WHERE {self._where(scope, fields)} AND scope_key > :after "
            "GROUP BY scope_key ORDER BY scope_key LIMIT :limit) "
            f"SELECT g.scope_key, g.entries, {context}, {live} "
            f"FROM g JOIN {t} AS e ON e.id = g.first ORDER BY g.scope_key"
        )
        found = self._batches[key] = self._sql(sql)
        return found

    def drop_entries(self, scope: str, fields: tuple[str, ...]) -> DriverStatement:
        """Delete the entries of the scopes ``keys`` that still match the filter (a row
        changed meanwhile to another identity stays), returning each one's scope key and
        whether it had a value (1) or was an absent ``NULL`` row (0)."""
        key = (scope, fields)
        found = self._drops.get(key)
        if found is None:
            # SQLite 3.40 returns 1 for "value_json IS NULL" of a NULL row deleted through
            # an index; typeof() is right there.
            present = (
                "value_json IS NOT NULL"
                if self.postgres
                else "CASE typeof(value_json) WHEN 'null' THEN 0 ELSE 1 END"
            )
            sql = (
                f"DELETE FROM {self._t} WHERE scope_key {self.among()} "
                f"AND {self._where(scope, fields)} RETURNING scope_key, {present}"
            )
            found = self._drops[key] = self._sql(sql)
        return found
