"""``SQLBackend``: statekit's table over SQLAlchemy Core (async), PostgreSQL or SQLite.

Every single-key operation is one statement run on its own, without a transaction (one
round trip on PostgreSQL): the upsert is ``INSERT ... ON CONFLICT (scope_key, state_key)
DO UPDATE ... RETURNING version``, the snapshot one ``scope_key IN (...)`` query, a
listing one range scan of the unique index. SQLAlchemy builds the statements once per
backend (see :mod:`.statements`) and owns the pool; single statements and batches run
on the driver's connection (see :mod:`.driver`), the export and the DDL through
SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateSchema, CreateTable, MetaData
from sqlalchemy.util import greenlet_spawn

from statekit.backends.base import (
    BackendInfo,
    Capability,
    ScopeContext,
    StateEntry,
    StateWrite,
)
from statekit.backends.gate import FifoGate
from statekit.backends.sql import driver
from statekit.backends.sql.engine import build_engine
from statekit.backends.sql.faults import TRANSLATED, driver_errors, translate
from statekit.backends.sql.options import parse_url, split_options
from statekit.backends.sql.schema import (
    CONTEXT_COLUMNS,
    DEFAULT_TABLE_NAME,
    EXPECTED_COLUMNS,
    state_table,
)
from statekit.backends.sql.statements import EXPORT_BATCH_SIZE, DriverStatement, Statements
from statekit.errors import (
    ConfigurationError,
    StateBackendError,
    VersionConflictError,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["EXPORT_BATCH_SIZE", "SQLBackend", "prefix_successor"]

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    ``None`` when there is none (the prefix is all maximum code points), so
    ``prefix <= key < successor`` selects exactly the keys with that prefix.
    """
    chars = list(prefix)
    while chars:
        point = ord(chars.pop()) + 1
        if point in _SURROGATES:
            point = _SURROGATES.stop  # keys never hold surrogates; skip them
        if point <= _MAX_CODE_POINT:
            return "".join(chars) + chr(point)
    return None


def _utc(moment: datetime) -> datetime:
    # SQLite hands back the naive UTC text it was given.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class SQLBackend:
    """``postgresql+asyncpg://...`` and ``sqlite+aiosqlite:///path``: one SQL table.

    Build it with :meth:`from_url` (the backend owns and disposes its engine) or from an
    :class:`~sqlalchemy.ext.asyncio.AsyncEngine` the host owns (never disposed here).
    With ``create_schema`` the table is created if absent on first use; otherwise the
    host's migrations own it (see :func:`statekit.backends.sql.state_table`).
    ``max_in_flight`` (``from_url``: pool size + overflow) admits that many operations
    at once, first come first served, each waiting at most ``pool_timeout`` seconds for
    its turn; give a host engine's pool size here when many tasks share the backend.
    """

    capabilities = frozenset({Capability.VERSIONS})

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        schema: str | None = None,
        create_schema: bool = True,
        max_in_flight: int | None = None,
        pool_timeout: float = 5.0,
    ) -> None:
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ConfigurationError(f"SQLBackend supports PostgreSQL and SQLite, not {dialect}")
        self._engine = engine
        self._sync_engine = engine.sync_engine
        self._owns_engine = False
        self._dialect = dialect
        self._schema = schema
        self._table = state_table(MetaData(), table_name, schema)
        self._ready = not create_schema  # False until the schema is known to exist
        self._closed = False
        self._schema_lock = asyncio.Lock()
        # An in-memory SQLite database is one shared connection: use it one task at a time.
        self._shared_connection = isinstance(engine.pool, StaticPool)
        if self._shared_connection:
            max_in_flight = 1
        # SQLAlchemy's async pool hands a returned connection to whichever task asks next,
        # so with more tasks than connections a waiter can starve past its timeout. A FIFO
        # gate of the pool's size in front of it serves callers in order instead.
        self._gate = (
            None
            if max_in_flight is None
            else FifoGate(max_in_flight, pool_timeout, "database connection")
        )
        # Driver operations waiting for a place: they take the connections handed over.
        self._queued = 0
        self._connections = driver.Connections(self._sync_engine, lambda: self._queued > 0)
        self._statements = Statements(self._table, engine.dialect)
        self._driver_errors = TRANSLATED + driver_errors(dialect)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A backend for ``url``; no I/O until first use. Keyword options win over URL
        query parameters; unknown options raise :class:`ConfigurationError`."""
        parsed, opts = split_options(parse_url(url), options)
        backend = cls(
            build_engine(parsed, opts),
            table_name=opts.table_name,
            schema=opts.schema_,
            create_schema=opts.create_schema,
            max_in_flight=sum(opts.pool(parsed.get_backend_name())),
            pool_timeout=opts.timeout,
        )
        backend._owns_engine = True
        return backend

    def __repr__(self) -> str:
        url = self._engine.url.render_as_string(hide_password=True)
        return f"SQLBackend(url={url!r}, table={self.table_fullname!r})"

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def table(self) -> Table:
        """The table this backend reads and writes."""
        return self._table

    @property
    def table_fullname(self) -> str:
        return self._table.fullname

    # ---- plumbing -----------------------------------------------------------------

    async def _enter(self, *, driver_operation: bool = False) -> None:
        """Take one of the gate's places (FIFO), waiting at most ``pool_timeout``."""
        if self._gate is None:
            return
        if not driver_operation:
            await self._gate.acquire()
            return
        # Counted while it waits (a free place is taken without suspending).
        self._queued += 1
        try:
            await self._gate.acquire()
        finally:
            self._queued -= 1

    def _leave(self) -> None:
        if self._gate is not None:
            self._gate.release()

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Hold one of the gate's places for a block that uses the engine itself."""
        await self._enter()
        try:
            if self._connections.parked:
                # Left by a queued operation that gave up: the block needs the pool's.
                await greenlet_spawn(self._connections.release)
            yield
        finally:
            self._leave()

    async def _prepare(self) -> None:
        if self._closed:
            raise StateBackendError("SQL backend is closed")
        async with self._schema_lock:
            if not self._ready:
                await self.create_schema()

    async def _rows(
        self,
        statement: DriverStatement,
        params: Mapping[str, Any],
        what: str,
        *,
        read: bool = False,
    ) -> Sequence[Any]:
        """Run one statement on its own (no transaction) and fetch its rows."""
        rows: Sequence[Any] = await self._on_driver(
            driver.run, statement.sql, statement.arguments(params), what, read=read
        )
        return rows

    async def _on_driver(
        self,
        run: Callable[[driver.Connections, str, Any], Any],
        sql: str,
        arguments: Any,
        what: str,
        *,
        read: bool,
    ) -> Any:
        """``run(connections, sql, arguments)`` on a driver connection, behind the gate.

        A read that finds its connection dead is retried once: the failure has discarded
        the pool's stale connections, so the retry runs on a fresh one. Writes are not
        retried (the lost reply may belong to an applied write).
        """
        if not self._ready:
            await self._prepare()
        for attempt in (1, 2):
            await self._enter(driver_operation=True)
            try:
                # One greenlet for checkout, execution and checkin.
                return await greenlet_spawn(run, self._connections, sql, arguments)
            except driver.ConnectionLost as lost:
                if read and attempt == 1:
                    continue
                cause = lost.__cause__ or lost
                raise translate(cause, what, lost=True) from cause
            except self._driver_errors as exc:
                raise translate(exc, what) from exc
            finally:
                self._leave()
        raise AssertionError("unreachable")  # pragma: no cover

    async def create_schema(self) -> None:
        """Create the table (and PostgreSQL schema) if absent; safe to call repeatedly."""
        if self._closed:
            raise StateBackendError("SQL backend is closed")
        for attempt in (1, 2):
            try:
                async with self._guard(), self._engine.begin() as conn:
                    if self._schema is not None:
                        await conn.execute(CreateSchema(self._schema, if_not_exists=True))
                    await conn.execute(CreateTable(self._table, if_not_exists=True))
                break
            except (sa_exc.IntegrityError, sa_exc.ProgrammingError) as exc:
                # PostgreSQL's IF NOT EXISTS can still lose a race with another process
                # creating the same table; once that one has committed, ours is a no-op.
                if attempt == 2:
                    raise translate(exc, "create the schema") from exc
            except TRANSLATED as exc:
                raise translate(exc, "create the schema") from exc
        self._ready = True

    # ---- reads --------------------------------------------------------------------

    async def get(self, scope_key: str, state_key: str) -> str | None:
        params = {"scope_key": scope_key, "state_key": state_key}
        rows = await self._rows(self._statements.get, params, "get", read=True)
        return rows[0][0] if rows else None

    async def get_versioned(self, scope_key: str, state_key: str) -> tuple[str | None, int]:
        params = {"scope_key": scope_key, "state_key": state_key}
        statement = self._statements.get_versioned
        rows = await self._rows(statement, params, "get", read=True)
        return (rows[0][0], rows[0][1]) if rows else (None, 0)

    async def read_scopes(self, scope_keys: Sequence[str]) -> dict[str, dict[str, str]]:
        snapshot: dict[str, dict[str, str]] = {scope_key: {} for scope_key in scope_keys}
        if not snapshot:
            return snapshot
        params = {f"scope_key_{i}": scope_key for i, scope_key in enumerate(snapshot)}
        statement = self._statements.snapshot(len(params))
        for scope_key, state_key, value_json in await self._rows(
            statement, params, "read a snapshot", read=True
        ):
            snapshot[scope_key][state_key] = value_json
        return snapshot

    async def list_keys(
        self, scope_key: str, prefix: str, limit: int, after: str | None
    ) -> tuple[list[str], bool]:
        params: dict[str, Any] = {"scope_key": scope_key, "limit": limit + 1}
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
        if self._shared_connection:
            async for entry in self._iter_pages():
                yield entry
            return
        try:
            async with self._guard(), self._engine.connect() as conn:
                result = await conn.stream(
                    self._statements.export.execution_options(yield_per=EXPORT_BATCH_SIZE)
                )
                async for row in result:
                    yield self._entry(row)
        except TRANSLATED as exc:
            raise translate(exc, "export entries") from exc

    async def _iter_pages(self) -> AsyncIterator[StateEntry]:
        # The shared in-memory connection cannot stay lent to a cursor while the caller
        # uses the backend between entries: read short pages by id instead.
        last_id = 0
        while True:
            try:
                async with self._guard(), self._engine.connect() as conn:
                    result = await conn.execute(self._statements.export_page, {"last_id": last_id})
                    rows = result.all()
            except TRANSLATED as exc:
                raise translate(exc, "export entries") from exc
            for row in rows:
                yield self._entry(row[1:])
            if len(rows) < EXPORT_BATCH_SIZE:
                return
            last_id = rows[-1][0]

    @staticmethod
    def _entry(row: Sequence[Any]) -> StateEntry:
        """A row of ``_export``'s columns as an entry."""
        end = 3 + len(CONTEXT_COLUMNS)
        created_at, updated_at, version = row[end:]
        return StateEntry(
            row[0],
            row[1],
            row[2],
            ScopeContext(*row[3:end]),
            _utc(created_at),
            _utc(updated_at),
            version,
        )

    # ---- writes -------------------------------------------------------------------

    @staticmethod
    def _row(
        scope_key: str, state_key: str, value_json: str, context: ScopeContext, now: Any
    ) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies and cost a tenth of a set.
        return {
            "runner_id": context.runner_id,
            "binding_identity": context.binding_identity,
            "scope": context.scope,
            "scope_key": scope_key,
            "state_key": state_key,
            "value_json": value_json,
            "bot_id": context.bot_id,
            "workspace_id": context.workspace_id,
            "conversation_id": context.conversation_id,
            "thread_id": context.thread_id,
            "actor_type": context.actor_type,
            "actor_id": context.actor_id,
            "subject_type": context.subject_type,
            "subject_id": context.subject_id,
            "created_at": now,
            "updated_at": now,
        }

    async def set(
        self,
        scope_key: str,
        state_key: str,
        value_json: str,
        context: ScopeContext,
        expected_version: int | None = None,
    ) -> int:
        statements = self._statements
        now = statements.timestamp(datetime.now(timezone.utc))
        if expected_version is None:
            row = self._row(scope_key, state_key, value_json, context, now)
            rows = await self._rows(statements.upsert, row, "set")
            return int(rows[0][0])
        while True:
            if expected_version == 0:
                row = self._row(scope_key, state_key, value_json, context, now)
                rows = await self._rows(statements.insert_new, row, "set")
            else:
                params = {
                    "key_scope": scope_key,
                    "key_state": state_key,
                    "expected": expected_version,
                    "new_value": value_json,
                    "now": now,
                }
                rows = await self._rows(statements.update_if, params, "set")
            if rows:
                return int(rows[0][0])
            key = {"scope_key": scope_key, "state_key": state_key}
            found = await self._rows(statements.version, key, "set")
            actual = int(found[0][0]) if found else 0
            if actual != expected_version:
                raise VersionConflictError(scope_key, state_key, expected_version, actual)
            # Deleted or re-created between the two statements: the condition holds now.

    async def set_many(self, writes: Sequence[StateWrite]) -> None:
        if not writes:
            return
        statement = self._statements.upsert_many
        now = self._statements.timestamp(datetime.now(timezone.utc))
        rows = [
            statement.arguments(self._row(w.scope_key, w.state_key, w.value_json, w.context, now))
            for w in writes
        ]
        # The driver applies the rows in order, in one transaction (one round trip on
        # PostgreSQL).
        await self._on_driver(driver.run_many, statement.sql, rows, "set many", read=False)

    async def delete(self, scope_key: str, state_key: str) -> bool:
        params = {"scope_key": scope_key, "state_key": state_key}
        return bool(await self._rows(self._statements.delete, params, "delete"))

    async def clear(self) -> None:
        await self._rows(self._statements.clear, {}, "clear")

    # ---- lifecycle ----------------------------------------------------------------

    async def describe(self) -> BackendInfo:
        if self._closed:
            raise StateBackendError("SQL backend is closed")
        version_query = (
            "SELECT current_setting('server_version')"
            if self._dialect == "postgresql"
            else "SELECT sqlite_version()"
        )
        try:
            async with self._guard(), self._engine.connect() as conn:
                server_version = str((await conn.execute(text(version_query))).scalar_one())
                layout = await conn.run_sync(self._layout)
        except TRANSLATED as exc:
            raise translate(exc, "describe") from exc
        return BackendInfo(
            backend=self._dialect,
            server_version=server_version,
            layout=layout,
            namespace=self.table_fullname,
            url=self._engine.url.render_as_string(hide_password=True),
        )

    def _layout(self, conn: Connection) -> str:
        """``ok``, or what is missing from the table."""
        name, schema = self._table.name, self._schema
        inspector = inspect(conn)
        if not inspector.has_table(name, schema=schema):
            return f"missing table {self.table_fullname}"
        problems: list[str] = []
        columns = {column["name"]: column for column in inspector.get_columns(name, schema)}
        missing = [column for column in EXPECTED_COLUMNS if column not in columns]
        if missing:
            problems.append("missing columns: " + ", ".join(missing))
        wanted: list[str | None] = ["scope_key", "state_key"]
        uniques: list[list[str | None]] = [
            list(u["column_names"]) for u in inspector.get_unique_constraints(name, schema)
        ]
        indexes = inspector.get_indexes(name, schema)
        uniques += [list(i["column_names"]) for i in indexes if i["unique"]]
        if wanted not in uniques:
            problems.append("missing unique (scope_key, state_key)")
        if self._dialect == "postgresql" and "state_key" in columns:
            collation = getattr(columns["state_key"]["type"], "collation", None)
            if collation != "C":
                problems.append(f'state_key collation is {collation!r}, not "C"')
        return "; ".join(problems) if problems else "ok"

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        await greenlet_spawn(self._connections.release)
        if self._owns_engine:
            await self._engine.dispose()
