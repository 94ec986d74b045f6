"""Expiry on the SQL backend: what each write, refresh and sweep runs (see
:mod:`.expiry_sql` for the statements).

A scope's deadline is a row of the scopes table; a scope without one never expires.
Every read skips an expired scope's entries (:class:`.statements.Statements`), so reads
never depend on the sweep. A write to an expired scope starts a new one: it first deletes
the scope's old entries and clears the deadline, under the scope row's lock (PostgreSQL)
or SQLite's write lock, so two writers restarting one scope never delete each other's
entries.

* A write without ``ttl`` is one statement that does nothing on an expired scope; only
  then does the write below run.
* PostgreSQL: a write with ``ttl`` (or to an expired scope) is one statement
  (:meth:`.expiry_sql.ExpirySQL._pg_write`), restart included; ``set_many`` runs it once
  per write in one round trip.
* SQLite: a write with ``ttl`` (or to an expired scope) is a short ``BEGIN IMMEDIATE``
  transaction.
* Conditional writes (``expected_version``) without ``ttl`` try one statement that only
  succeeds on a live scope; otherwise, and with ``ttl``, they run in a transaction that
  locks the scope's row first.

A deadline already equal to its target is not written again. With a tolerance
(``SQLBackend.deadline_tolerance``, a share of the ttl, capped at 1 s) a write also leaves
a deadline that close to its target unmoved: the update of the scopes row (a new row
version and index entry) is skipped, and the deadline is at most that much early. It is
0 (exact) by default: ``docs/backends/sql.md`` has what it saves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from statekit.backends.base import ScopeContext, StateWrite, SweepResult
from statekit.backends.sql.driver import Program, Session
from statekit.backends.sql.expiry_sql import ExpirySQL
from statekit.backends.sql.schema import CONTEXT_COLUMNS
from statekit.backends.sql.statements import DriverStatement, Statements
from statekit.errors import VersionConflictError

_context_values = attrgetter(*CONTEXT_COLUMNS)
#: The longest a write or refresh leaves a deadline unmoved, whatever the share.
MAX_TOLERANCE = 1.0


def tolerance(ttl: float, share: float) -> float:
    """How far from its target a deadline may stay unmoved by a write with ``ttl``:
    ``share`` of it, at most :data:`MAX_TOLERANCE`."""
    return min(MAX_TOLERANCE, share * ttl) if math.isfinite(ttl) else 0.0


@dataclass(frozen=True, slots=True)
class Deadline:
    """What a ``ttl`` asks of the scope's deadline at ``now``."""

    now: float
    #: The new deadline, ``None`` for none (:data:`~statekit.backends.base.NEVER`).
    at: float | None
    #: Whether the write sets it (``ttl`` given).
    touch: bool
    tolerance: float

    @classmethod
    def of(cls, now: float, ttl: float | None, share: float = 0.0) -> Deadline:
        if ttl is None:
            return cls(now, None, False, 0.0)
        at = now + ttl if math.isfinite(ttl) else None
        return cls(now, at, True, tolerance(ttl, share))

    def extras(self) -> tuple[Any, ...]:
        """The parameters :attr:`ExpirySQL.write` takes after the row's."""
        return (self.now, self.at, self.touch, self.tolerance)


def _ended(rows: Sequence[Any]) -> bool:
    """Whether :attr:`.expiry_sql.ExpirySQL.lock` found a scope to restart."""
    return bool(rows) and bool(rows[0][0])


class Expiry:
    """The expiry side of one backend's operations: arguments and programs for
    :func:`.driver.run_program`."""

    def __init__(self, sql: ExpirySQL, statements: Statements, postgres: bool) -> None:
        self.sql = sql
        self._statements = statements
        self.postgres = postgres

    @staticmethod
    def row(
        scope_key: str, state_key: str, value_json: str, context: ScopeContext, ts: Any
    ) -> tuple[Any, ...]:
        """The row's arguments of the expiry statements (``ROW_COLUMNS`` order)."""
        return (scope_key, state_key, value_json, *_context_values(context), ts, ts)

    def _restart(self, session: Session, scope_key: str, now: float) -> bool:
        """Restart ``scope_key`` if it has expired (its row locked first); whether it had."""
        sql = self.sql
        if not _ended(session.fetch(sql.lock.sql, (scope_key, now))):
            return False
        session.fetch(sql.drop_entries.sql, (scope_key,))
        session.fetch(sql.reset_deadline.sql, (scope_key,))
        return True

    def _move(self, session: Session, scope_key: str, deadline: Deadline) -> None:
        if deadline.touch:
            arguments = (scope_key, deadline.at, deadline.tolerance)
            session.fetch(self.sql.set_deadline.sql, arguments)

    def sqlite_write(self, row: tuple[Any, ...], deadline: Deadline) -> Program:
        """SQLite's unconditional write in a transaction: restart, upsert, deadline."""

        def run(session: Session) -> int:
            upsert = self.sql.live_upsert.sql
            arguments = (*row, deadline.now)
            rows = session.fetch(upsert, arguments)
            if not rows and self._restart(session, row[0], deadline.now):
                rows = session.fetch(upsert, arguments)
            self._move(session, row[0], deadline)
            return int(rows[0][0])

        return run

    def conditional(
        self,
        row: tuple[Any, ...],
        expected_version: int,
        deadline: Deadline,
    ) -> Program:
        """A conditional write in a transaction: the scope's row locked, an expired
        scope restarted, then the version check (a conflict rolls everything back)."""
        statements = self._statements
        scope_key, state_key, value_json = row[0], row[1], row[2]
        key = {"scope_key": scope_key, "state_key": state_key, "now": deadline.now}

        def run(session: Session) -> int:
            self._restart(session, scope_key, deadline.now)
            while True:
                if expected_version == 0:
                    rows = session.fetch(self.sql.live_insert_new.sql, (*row, deadline.now))
                else:
                    params = {
                        "key_scope": scope_key,
                        "key_state": state_key,
                        "expected": expected_version,
                        "new_value": value_json,
                        "now": deadline.now,
                        "ts": row[-1],
                    }
                    rows = _fetch(session, statements.update_if, params)
                if rows:
                    break
                found = _fetch(session, statements.version, key)
                actual = int(found[0][0]) if found else 0
                if actual != expected_version:
                    raise VersionConflictError(scope_key, state_key, expected_version, actual)
            self._move(session, scope_key, deadline)
            return int(rows[0][0])

        return run

    def sqlite_write_many(
        self, writes: Sequence[StateWrite], ts: Any, now: float, share: float
    ) -> Program:
        """SQLite's ``set_many`` in one transaction. Without any ``ttl`` the upserts that
        skip expired scopes run first and are all there is unless one skipped; then the
        expired scopes are restarted and their writes made; finally each scope's last
        ``ttl`` moves its deadline."""
        rows = [self.row(w.scope_key, w.state_key, w.value_json, w.context, ts) for w in writes]
        upsert = self.sql.live_upsert_many.sql

        def run(session: Session) -> None:
            timed = [(*row, now) for row in rows]
            first_pass = all(w.ttl is None for w in writes)
            if first_pass and session.many(upsert, timed) == len(timed):
                return
            restarted = {
                scope_key
                for scope_key in dict.fromkeys(w.scope_key for w in writes)
                if self._restart(session, scope_key, now)
            }
            todo = [r for r in timed if r[0] in restarted] if first_pass else timed
            if todo:
                session.many(upsert, todo)
            last: dict[str, Deadline] = {}
            for w in writes:
                if w.ttl is not None:
                    last[w.scope_key] = Deadline.of(now, w.ttl, share)
            if last:
                session.many(
                    self.sql.set_deadline.sql,
                    [(scope_key, d.at, d.tolerance) for scope_key, d in last.items()],
                )

        return run

    def refreshed(
        self,
        ttls: Mapping[str, float],
        now: float,
        read: DriverStatement,
        params: Mapping[str, Any],
        share: float,
    ) -> Program:
        """Move the live, finite deadlines of ``ttls``' scopes, then ``read``."""
        refresh = self.sql.refresh.sql

        def run(session: Session) -> Sequence[Any]:
            moves = []
            for scope_key, ttl in ttls.items():
                d = Deadline.of(now, ttl, share)
                moves.append((scope_key, d.at, d.tolerance, now))
            if moves:
                session.many(refresh, moves)
            rows: Sequence[Any] = _fetch(session, read, params)
            return rows

        return run

    def sweep_batch(self, now: float, limit: int) -> Callable[[Session], SweepResult]:
        """One batch of the sweep: at most ``limit`` entries of expired scopes, then the
        expired scopes left without entries (their deadline checked again)."""
        sql = self.sql

        def run(session: Session) -> SweepResult:
            params: dict[str, Any] = {"now": now, "limit": limit}
            if self.postgres:
                keys = [r[0] for r in _fetch(session, sql.sweep_scopes, params)]
                if not keys:
                    return SweepResult()
                params["keys"] = keys
            entries = len(_fetch(session, sql.sweep_entries, params))
            scopes = len(_fetch(session, sql.sweep_done, params))
            return SweepResult(scopes, entries)

        return run


def _fetch(session: Session, statement: DriverStatement, params: Mapping[str, Any]) -> Any:
    return session.fetch(statement.sql, statement.arguments(params))
