"""The statements of expiry: writes that move a scope's deadline, refreshes, the sweep.

Written as SQL text (with the tables' quoted names) rather than SQLAlchemy Core: they are
PostgreSQL's data-modifying ``WITH`` queries, where the order in which the parts run
matters (see :attr:`ExpirySQL.write`), and SQLite's plain statements run in one short
transaction instead. Parameters are written ``:name`` and numbered here in a fixed order
(``$n`` for asyncpg, ``?n`` for sqlite3), so a row's arguments are passed by position.
PostgreSQL's parameters carry their types (``:now::float8``): in ``INSERT ... SELECT`` the
server cannot infer them from the columns.

Every deadline is compared with ``:now``, the backend's clock, never the server's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.engine import Dialect

from statekit.backends.sql.schema import CONTEXT_COLUMNS, TableShape
from statekit.backends.sql.statements import ROW_COLUMNS, DriverStatement

#: The parameters of :attr:`ExpirySQL.write` after the row's: the clock's time, the new
#: deadline (``NULL``: none), whether the write sets it, and the tolerance.
WRITE_EXTRAS = ("now", "deadline", "touch", "tolerance")
_PLACEHOLDER = re.compile(r"(?<!:):([a-z_]+)\b")


def driver_sql(sql: str, dialect: Dialect, order: Sequence[str] = ()) -> DriverStatement:
    """``sql`` with its ``:name`` parameters numbered: those of ``order`` first, in that
    order, then the others in order of appearance; a name used twice is one parameter."""
    names = list(order)
    for name in _PLACEHOLDER.findall(sql):
        if name not in names:
            names.append(name)
    mark = "$" if dialect.name == "postgresql" else "?"
    text = _PLACEHOLDER.sub(lambda m: f"{mark}{names.index(m.group(1)) + 1}", sql)
    return DriverStatement(text, tuple(names), {})


class ExpirySQL:
    """The expiry statements of one backend over ``table`` and ``scopes``, as found."""

    def __init__(self, table: Table, scopes: Table, dialect: Dialect, shape: TableShape) -> None:
        quote = dialect.identifier_preparer
        self._postgres = dialect.name == "postgresql"
        self._dialect = dialect
        self._shape = shape
        self._t = quote.format_table(table)
        self._s = quote.format_table(scopes)
        ts = "timestamptz" if shape.aware_timestamps else "timestamp"
        self._types = {
            **{name: "varchar" for name in ROW_COLUMNS},
            "value_json": "text",
            "created_at": ts,
            "updated_at": ts,
            "now": "float8",
            "deadline": "float8",
            "tolerance": "float8",
            "touch": "boolean",
            "limit": "int",
            "keys": "varchar[]",
        }
        self._build()

    def _p(self, name: str) -> str:
        """Parameter ``name``, typed on PostgreSQL."""
        return f":{name}::{self._types[name]}" if self._postgres else f":{name}"

    def _sql(self, sql: str, order: Sequence[str] = ()) -> DriverStatement:
        return driver_sql(sql, self._dialect, order)

    def _build(self) -> None:
        t, s, p = self._t, self._s, self._p
        present = " AND value_json IS NOT NULL" if self._shape.nullable_values else ""
        #: Whether the scope has entries (a scope emptied by deletes has ended).
        self._entries = f"EXISTS (SELECT 1 FROM {t} WHERE {t}.scope_key = {s}.scope_key{present})"
        #: A scope to restart before writing: its deadline passed, or it has one but no
        #: entries left (deleted one by one: it ended, and its deadline with it).
        self._ended = (
            f"(expires_at <= {p('now')} OR (expires_at IS NOT NULL AND NOT {self._entries}))"
        )
        expired_scope = f"SELECT 1 FROM {s} WHERE scope_key = {p('scope_key')} AND {self._ended}"
        columns = ", ".join(ROW_COLUMNS)
        values = ", ".join(p(name) for name in ROW_COLUMNS)
        version = "version" if self._shape.versions else "0"
        bump = f", version = {t}.version + 1" if self._shape.versions else ""
        updated = f"value_json = excluded.value_json, updated_at = excluded.updated_at{bump}"
        #: The lone upsert of a live (or deadline-free) scope: nothing when it has expired.
        live_upsert = (
            f"INSERT INTO {t} ({columns}) SELECT {values} WHERE NOT EXISTS ({expired_scope}) "
            f"ON CONFLICT (scope_key, state_key) DO UPDATE SET {updated}"
        )
        self.live_upsert = self._sql(f"{live_upsert} RETURNING {version}", ROW_COLUMNS)
        #: The same for ``executemany``, whose count of changed rows tells whether every
        #: write was made (sqlite3 counts nothing for a statement that returns rows).
        self.live_upsert_many = self._sql(live_upsert, ROW_COLUMNS)
        new_only = (
            f"DO UPDATE SET {updated} WHERE {t}.value_json IS NULL"
            if self._shape.nullable_values
            else "DO NOTHING"
        )
        #: ``expected_version=0`` on a live scope: nothing when the key is present or the
        #: scope has expired.
        self.live_insert_new = self._sql(
            f"INSERT INTO {t} ({columns}) SELECT {values} WHERE NOT EXISTS ({expired_scope}) "
            f"ON CONFLICT (scope_key, state_key) {new_only} RETURNING {version}",
            ROW_COLUMNS,
        )
        lock = " FOR UPDATE" if self._postgres else ""
        #: The scope's row (locked on PostgreSQL): whether it has to be restarted.
        self.lock = self._sql(
            f"SELECT {self._ended} FROM {s} WHERE scope_key = {p('scope_key')}{lock}",
            ("scope_key", "now"),
        )
        self.drop_entries = self._sql(f"DELETE FROM {t} WHERE scope_key = {p('scope_key')}")
        self.reset_deadline = self._sql(
            f"UPDATE {s} SET expires_at = NULL WHERE scope_key = {p('scope_key')}"
        )
        moved = (
            f"NOT ({s}.expires_at IS NOT DISTINCT FROM excluded.expires_at OR "
            f"coalesce(abs({s}.expires_at - excluded.expires_at) <= {p('tolerance')}, false))"
        )
        if not self._postgres:
            moved = moved.replace("IS NOT DISTINCT FROM", "IS")
        #: Move a scope's deadline (``NULL``: none), unless within the tolerance already.
        self.set_deadline = self._sql(
            f"INSERT INTO {s} (scope_key, expires_at) VALUES ({p('scope_key')}, {p('deadline')}) "
            f"ON CONFLICT (scope_key) DO UPDATE SET expires_at = excluded.expires_at "
            f"WHERE {moved}",
            ("scope_key", "deadline", "tolerance"),
        )
        #: Refresh on read: only a live, finite deadline moves (``NULL``: it is removed).
        self.refresh = self._sql(
            f"UPDATE {s} SET expires_at = {p('deadline')} WHERE scope_key = {p('scope_key')} "
            f"AND expires_at > {p('now')} AND ({p('deadline')} IS NULL "
            f"OR abs(expires_at - {p('deadline')}) > {p('tolerance')})",
            ("scope_key", "deadline", "tolerance", "now"),
        )
        self.deadline = self._sql(
            f"SELECT expires_at FROM {s} WHERE scope_key = {p('scope_key')} "
            f"AND expires_at > {p('now')} AND {self._entries}"
        )
        self.clear_scopes = self._sql(f"DELETE FROM {s}")
        if self._postgres:
            self.write = self._sql(self._pg_write(), (*ROW_COLUMNS, *WRITE_EXTRAS))
            #: Takes the row's parameters, then ``now``, ``deadline`` and ``tolerance``.
            self.write_live = self._sql(
                self._pg_write_live(), (*ROW_COLUMNS, "now", "deadline", "tolerance")
            )
        self._build_sweep()

    def _pg_write(self) -> str:
        """PostgreSQL's write of one entry, in one statement: the upsert, the deadline,
        and, when the scope has expired, its restart.

        ``expired`` locks the scope's row only if its deadline has passed (or its entries
        are all deleted, which ends a scope as expiry does); ``gone`` then
        deletes the scope's other entries and the upsert's ``CASE`` makes the written one
        new (version 1, its own creation time and context). ``deadline`` sets the new
        deadline (``touch``), or clears an expired one. The entry's ``INSERT`` reads from
        both (``count(*)``), so the scopes row is locked before the entry's: the order the
        sweep takes them in, so a write and a sweep never deadlock.
        """
        t, s, p = self._t, self._s, self._p
        restarted = "EXISTS (SELECT FROM expired)"
        new = [*CONTEXT_COLUMNS, "created_at"]
        if self._shape.versions:
            version = f"version = CASE WHEN {restarted} THEN 1 ELSE t.version + 1 END, "
        else:
            version = ""
        kept = ", ".join(
            f"{name} = CASE WHEN {restarted} THEN excluded.{name} ELSE t.{name} END" for name in new
        )
        moved = (
            "NOT (sc.expires_at IS NOT DISTINCT FROM excluded.expires_at OR "
            f"coalesce(abs(sc.expires_at - excluded.expires_at) <= {p('tolerance')}, false))"
        )
        return (
            f"WITH expired AS (SELECT scope_key FROM {s} WHERE scope_key = {p('scope_key')} "
            f"AND {self._ended} FOR UPDATE), "
            f"gone AS (DELETE FROM {t} WHERE scope_key = {p('scope_key')} "
            f"AND state_key <> {p('state_key')} AND {restarted} RETURNING 1), "
            f"deadline AS (INSERT INTO {s} AS sc (scope_key, expires_at) "
            f"SELECT {p('scope_key')}, {p('deadline')} WHERE {p('touch')} OR {restarted} "
            f"ON CONFLICT (scope_key) DO UPDATE SET expires_at = excluded.expires_at "
            f"WHERE {restarted} OR {moved} RETURNING 1) "
            f"INSERT INTO {t} AS t ({', '.join(ROW_COLUMNS)}) "
            f"SELECT {', '.join(p(name) for name in ROW_COLUMNS)} "
            "FROM (SELECT count(*) FROM deadline) AS d, (SELECT count(*) FROM gone) AS g "
            "ON CONFLICT (scope_key, state_key) DO UPDATE SET "
            f"value_json = excluded.value_json, updated_at = excluded.updated_at, {version}{kept} "
            f"RETURNING {'t.version' if self._shape.versions else '0'}"
        )

    def _pg_write_live(self) -> str:
        """PostgreSQL's write with ``ttl`` to a scope that has not expired, the usual case.

        ``current`` reads the scope's deadline. Unless it is already within the tolerance
        of its target, ``deadline`` upserts the scope row (only while the scope is live),
        and the entry's upsert reads from both, so the scope row is locked before the
        entry's. Within the tolerance the scope row is only read: no row version, lock or
        WAL record for it. Nothing when the scope has expired: :meth:`_pg_write` then
        restarts it. (An emptied scope needs no restart here: the write gives it its new
        deadline, and its first entry starts at version 1.)"""
        t, s, p = self._t, self._s, self._p
        version = "t.version" if self._shape.versions else "0"
        bump = ", version = t.version + 1" if self._shape.versions else ""
        live = f"(expires_at IS NULL OR expires_at > {p('now')})"
        close = f"{live} AND coalesce(abs(expires_at - {p('deadline')}) <= {p('tolerance')}, false)"
        return (
            f"WITH current AS (SELECT expires_at FROM {s} WHERE scope_key = {p('scope_key')}), "
            f"deadline AS (INSERT INTO {s} AS sc (scope_key, expires_at) "
            f"SELECT {p('scope_key')}, {p('deadline')} "
            f"WHERE NOT EXISTS (SELECT FROM current WHERE {close}) "
            "ON CONFLICT (scope_key) DO UPDATE SET expires_at = excluded.expires_at "
            f"WHERE sc.expires_at IS NULL OR sc.expires_at > {p('now')} RETURNING 1) "
            f"INSERT INTO {t} AS t ({', '.join(ROW_COLUMNS)}) "
            f"SELECT {', '.join(p(name) for name in ROW_COLUMNS)} "
            f"WHERE EXISTS (SELECT FROM deadline) OR EXISTS (SELECT FROM current WHERE {close}) "
            "ON CONFLICT (scope_key, state_key) DO UPDATE SET "
            f"value_json = excluded.value_json, updated_at = excluded.updated_at{bump} "
            f"RETURNING {version}"
        )

    def _build_sweep(self) -> None:
        t, s, p = self._t, self._s, self._p
        if self._postgres:
            # Scopes a writer holds are skipped: the next sweep takes them.
            self.sweep_scopes = self._sql(
                f"SELECT scope_key FROM {s} WHERE expires_at <= {p('now')} "
                f"ORDER BY expires_at LIMIT {p('limit')} FOR UPDATE SKIP LOCKED"
            )
            doomed = f"scope_key = ANY({p('keys')})"
        else:
            doomed = (
                f"scope_key IN (SELECT scope_key FROM {s} WHERE expires_at <= {p('now')} "
                f"ORDER BY expires_at, scope_key LIMIT {p('limit')})"
            )
        #: At most ``limit`` entries of the expired scopes.
        self.sweep_entries = self._sql(
            f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE {doomed} "
            f"LIMIT {p('limit')}) RETURNING 1"
        )
        #: The expired scopes left without entries; the deadline is checked again.
        self.sweep_done = self._sql(
            f"DELETE FROM {s} WHERE {doomed} AND expires_at <= {p('now')} "
            f"AND NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.scope_key = {s}.scope_key) "
            "RETURNING 1"
        )
