"""The SQL backend's writes, deletes and sweep (expiry's side: :mod:`.expiry`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from statekit.backends.base import StateWrite, SweepResult
from statekit.backends.sql import driver
from statekit.backends.sql.expiry import Deadline, Expiry
from statekit.backends.sql.parts import Parts
from statekit.errors import VersionConflictError


def _scope_of(write: StateWrite) -> str:
    return write.scope_key


class Writes(Parts):
    """``set``, ``set_many``, ``delete``, ``clear`` and ``sweep_expired`` of
    :class:`~statekit.backends.sql.SQLBackend`."""

    async def set(self, write: StateWrite, expected_version: int | None = None) -> int:
        scope_key, state_key, value_json, context, ttl = (
            write.scope_key,
            write.state_key,
            write.value_json,
            write.context,
            write.ttl,
        )
        if not self._ready:
            await self._prepare()
        if expected_version is not None:
            self._require_versions()
        if ttl is not None:
            self._require_expiry()
        statements = self._statements
        now = statements.timestamp(datetime.now(timezone.utc))
        expiry = self._expiry
        if expiry is not None:
            row = expiry.row(scope_key, state_key, value_json, context, now)
            if expected_version is None and ttl is None:
                # One statement, which writes nothing on a scope to restart.
                clock = self.clock()
                rows = await self._upsert(expiry.sql.live_upsert.sql, (*row, clock))
                if rows:
                    return int(rows[0][0])
                return await self._write_expiring(expiry, row, Deadline.of(clock, None))
            return await self._set_expiring(expiry, row, expected_version, ttl)
        if expected_version is None:
            row = statements.row(scope_key, state_key, value_json, context, now)
            rows = await self._upsert(statements.upsert.sql, row)
            return int(rows[0][0])
        while True:
            if expected_version == 0:
                row = statements.row(scope_key, state_key, value_json, context, now)
                rows = await self._run(driver.run, statements.insert_new.sql, row, "set")
            else:
                params = self._update_params(row_key=(scope_key, state_key), value=value_json)
                params.update(expected=expected_version, ts=now)
                rows = await self._rows(statements.update_if, params, "set")
            if rows:
                return int(rows[0][0])
            key = {"scope_key": scope_key, "state_key": state_key}
            found = await self._rows(statements.version, key, "set")
            actual = int(found[0][0]) if found else 0
            if actual != expected_version:
                raise VersionConflictError(scope_key, state_key, expected_version, actual)
            # Deleted or re-created between the two statements: the condition holds now.

    @staticmethod
    def _update_params(row_key: tuple[str, str], value: str) -> dict[str, Any]:
        return {"key_scope": row_key[0], "key_state": row_key[1], "new_value": value}

    async def _set_expiring(
        self,
        expiry: Expiry,
        row: tuple[Any, ...],
        expected_version: int | None,
        ttl: float | None,
    ) -> int:
        """``set`` on a table with expiry, but for an unconditional one without ``ttl``
        (``set`` runs it): one statement where it can (see :mod:`.expiry`)."""
        deadline = Deadline.of(self.clock(), ttl, self.deadline_tolerance)
        if expected_version is None:
            return await self._write_expiring(expiry, row, deadline)
        sql = expiry.sql
        if ttl is None:
            # On a live scope one statement decides; otherwise the transaction does.
            if expected_version == 0:
                arguments = (*row, deadline.now)
                rows = await self._run(driver.run, sql.live_insert_new.sql, arguments, "set")
            else:
                params = self._update_params(row_key=(row[0], row[1]), value=row[2])
                params.update(expected=expected_version, ts=row[-1], now=deadline.now)
                rows = await self._rows(self._statements.update_if, params, "set")
            if rows:
                return int(rows[0][0])
        program = expiry.conditional(row, expected_version, deadline)
        return int(await self._program(program, "set", transaction=True))

    async def _write_expiring(
        self, expiry: Expiry, row: tuple[Any, ...], deadline: Deadline
    ) -> int:
        """An unconditional set with a ``ttl``, or one whose first statement found the
        scope to restart: PostgreSQL's one statement, SQLite's transaction."""
        sql = expiry.sql
        if expiry.postgres:
            if deadline.touch:
                live = (*row, deadline.now, deadline.at, deadline.tolerance)
                rows = await self._run(driver.run, sql.write_live.sql, live, "set")
                if rows:
                    return int(rows[0][0])
            arguments = (*row, *deadline.extras())
            rows = await self._run(driver.run, sql.write.sql, arguments, "set")
            return int(rows[0][0])
        program = expiry.sqlite_write(row, deadline)
        return int(await self._program(program, "set", transaction=True))

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        if not writes:
            return
        if not self._ready:
            await self._prepare()
        if any(w.ttl is not None for w in writes):
            self._require_expiry()
        statements = self._statements
        now = statements.timestamp(datetime.now(timezone.utc))
        expiry = self._expiry
        if self._dialect == "postgresql":
            # Scopes locked in key order, as by every other batch and by an erase, so two
            # batches never deadlock over scopes. A stable sort: the writes of one scope
            # keep their order (the last one's ttl sets the deadline).
            writes = sorted(writes, key=_scope_of)
        if expiry is not None and not expiry.postgres:
            program = expiry.sqlite_write_many(writes, now, self.clock(), self.deadline_tolerance)
            await self._program(program, "set many", transaction=True)
            return
        if expiry is not None:
            clock = self.clock()
            sql, rows = (
                expiry.sql.write.sql,
                [
                    (
                        *expiry.row(w.scope_key, w.state_key, w.value_json, w.context, now),
                        *Deadline.of(clock, w.ttl, self.deadline_tolerance).extras(),
                    )
                    for w in writes
                ],
            )
        else:
            sql, rows = (
                statements.upsert_many.sql,
                [
                    statements.row(w.scope_key, w.state_key, w.value_json, w.context, now)
                    for w in writes
                ],
            )
        # The driver applies the rows in order, in one transaction (one round trip on
        # PostgreSQL).
        await self._run(driver.run_many, sql, rows, "set many")

    async def delete(self, scope_key: str, state_key: str) -> bool:
        if not self._ready:
            await self._prepare()
        params = {"scope_key": scope_key, "state_key": state_key, "now": self.clock()}
        return bool(await self._rows(self._statements.delete, params, "delete"))

    async def clear(self) -> None:
        if not self._ready:
            await self._prepare()
        if self._expiry is None:
            await self._rows(self._statements.clear, {}, "clear")
            return
        statements = (self._statements.clear.sql, self._expiry.sql.clear_scopes.sql)

        def run(session: driver.Session) -> None:
            for sql in statements:
                session.fetch(sql, ())

        await self._program(run, "clear", transaction=True)

    async def sweep_expired(self, batch_size: int = 1000) -> SweepResult:
        """Delete the entries and deadlines of expired scopes, at most ``batch_size``
        entries per transaction, each short and its own, until none is left; what was
        removed. A scope a writer holds (PostgreSQL) is left to the next sweep, and a
        deadline is checked again as its scope is deleted: a scope revived meanwhile
        keeps everything."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if not self._ready:
            await self._prepare()
        scopes = entries = 0
        while self._expiry is not None:
            batch = self._expiry.sweep_batch(self.clock(), batch_size)
            done: SweepResult = await self._program(batch, "sweep", transaction=True)
            if not (done.scopes or done.entries):
                break
            scopes, entries = scopes + done.scopes, entries + done.entries
        return SweepResult(scopes, entries)
