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
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateSchema, CreateTable, MetaData

from statekit.backends.base import (
    BackendInfo,
    Capability,
    ScopeContext,
    StateEntry,
    StateWrite,
)
from statekit.backends.sql import driver
from statekit.backends.sql.engine import build_engine
from statekit.backends.sql.faults import TRANSLATED, translate
from statekit.backends.sql.gateway import DriverRun, Gateway
from statekit.backends.sql.layout import server_and_layout
from statekit.backends.sql.options import parse_url, split_options
from statekit.backends.sql.schema import CONTEXT_COLUMNS, DEFAULT_TABLE_NAME, state_table
from statekit.backends.sql.statements import (
    EXPORT_BATCH_SIZE,
    DriverStatement,
    Statements,
    prefix_successor,
)
from statekit.errors import (
    ConfigurationError,
    StateBackendError,
    VersionConflictError,
)
from statekit.url import BackendURL, mask_password

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["EXPORT_BATCH_SIZE", "SQLBackend"]


def _utc(moment: datetime) -> datetime:
    # SQLite hands back the naive UTC text it was given.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class SQLBackend:
    """``postgresql+asyncpg://...`` and ``sqlite+aiosqlite:///path``: one SQL table.

    Build it with :meth:`from_url` (the backend owns and disposes its engine), or pass an
    :class:`~sqlalchemy.ext.asyncio.AsyncEngine` the host already owns: then
    :meth:`aclose` leaves it open, unless ``owns_client=True`` hands it over. With
    ``create_schema`` the table is created if absent on first use; otherwise the host's
    migrations own it (see :func:`statekit.backends.sql.state_table`). ``pool_size``
    (``from_url``: the pool's size + overflow) admits that many operations at once, first
    come first served, each waiting at most ``pool_timeout`` seconds for its turn
    (:class:`~statekit.errors.BackendTimeoutError`); give a host engine's pool size here
    when many tasks share the backend. An in-memory SQLite database (one shared
    connection) admits one operation at a time whatever ``pool_size`` says.
    """

    capabilities = frozenset({Capability.VERSIONS})
    #: The settings :func:`statekit.connect` hands to :meth:`from_url`.
    settings_options: ClassVar[frozenset[str]] = frozenset(
        {"table_name", "pool_size", "timeout", "connect_timeout"}
    )

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        schema: str | None = None,
        create_schema: bool = True,
        pool_size: int | None = None,
        pool_timeout: float = 5.0,
        owns_client: bool = False,
    ) -> None:
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ConfigurationError(f"SQLBackend supports PostgreSQL and SQLite, not {dialect}")
        self._engine = engine
        self._owns_engine = owns_client
        self._dialect = dialect
        self._url = mask_password(engine.url.render_as_string(hide_password=False))
        self._table = state_table(MetaData(), table_name, schema)
        self._ready = not create_schema  # False until the schema is known to exist
        self._closed = False
        self._schema_lock = asyncio.Lock()
        # An in-memory SQLite database is one shared connection: use it one task at a time.
        self._shared_connection = isinstance(engine.pool, StaticPool)
        self._gateway = Gateway(engine, 1 if self._shared_connection else pool_size, pool_timeout)
        self._statements = Statements(self._table, engine.dialect)

    @classmethod
    def from_url(cls, url: str | BackendURL, **options: Any) -> Self:
        """A backend for ``url``; no I/O until first use. Keyword options win over URL
        query parameters; unknown options raise :class:`ConfigurationError`."""
        parsed, opts = split_options(parse_url(BackendURL(url).for_first_at_parsers()), options)
        return cls(
            build_engine(parsed, opts),
            table_name=opts.table_name,
            schema=opts.schema_,
            create_schema=opts.create_schema,
            pool_size=sum(opts.pool(parsed.get_backend_name())),
            pool_timeout=opts.timeout,
            owns_client=True,
        )

    def __repr__(self) -> str:
        return f"SQLBackend(url={self._url!r}, table={self.table_fullname!r})"

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

    async def _prepare(self) -> None:
        if self._closed:
            raise StateBackendError("SQL backend is closed")
        async with self._schema_lock:
            if not self._ready:
                await self.create_schema()

    async def _run(
        self, run: DriverRun, sql: str, arguments: Any, what: str, *, read: bool = False
    ) -> Any:
        """``run(connections, sql, arguments)`` on a driver connection, in its turn."""
        if not self._ready:
            await self._prepare()
        return await self._gateway.run(run, sql, arguments, what, read=read)

    async def _rows(
        self,
        statement: DriverStatement,
        params: Mapping[str, Any],
        what: str,
        *,
        read: bool = False,
    ) -> Sequence[Any]:
        """Run one statement on its own (no transaction) and fetch its rows."""
        arguments = statement.arguments(params)
        rows: Sequence[Any] = await self._run(driver.run, statement.sql, arguments, what, read=read)
        return rows

    async def create_schema(self) -> None:
        """Create the table (and PostgreSQL schema) if absent; safe to call repeatedly."""
        if self._closed:
            raise StateBackendError("SQL backend is closed")
        for attempt in (1, 2):
            try:
                async with self._gateway.guard(), self._engine.begin() as conn:
                    if self._table.schema is not None:
                        await conn.execute(CreateSchema(self._table.schema, if_not_exists=True))
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
            async with self._gateway.guard(), self._engine.connect() as conn:
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
                async with self._gateway.guard(), self._engine.connect() as conn:
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
            row = statements.row(scope_key, state_key, value_json, context, now)
            rows = await self._run(driver.run, statements.upsert.sql, row, "set")
            return int(rows[0][0])
        while True:
            if expected_version == 0:
                row = statements.row(scope_key, state_key, value_json, context, now)
                rows = await self._run(driver.run, statements.insert_new.sql, row, "set")
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
        statements = self._statements
        now = statements.timestamp(datetime.now(timezone.utc))
        rows = [
            statements.row(w.scope_key, w.state_key, w.value_json, w.context, now) for w in writes
        ]
        # The driver applies the rows in order, in one transaction (one round trip on
        # PostgreSQL).
        await self._run(driver.run_many, statements.upsert_many.sql, rows, "set many")

    async def delete(self, scope_key: str, state_key: str) -> bool:
        params = {"scope_key": scope_key, "state_key": state_key}
        return bool(await self._rows(self._statements.delete, params, "delete"))

    async def clear(self) -> None:
        await self._rows(self._statements.clear, {}, "clear")

    # ---- lifecycle ----------------------------------------------------------------

    async def describe(self) -> BackendInfo:
        if self._closed:
            raise StateBackendError("SQL backend is closed")
        try:
            async with self._gateway.guard(), self._engine.connect() as conn:
                server_version, layout = await server_and_layout(conn, self._table)
        except TRANSLATED as exc:
            raise translate(exc, "describe") from exc
        return BackendInfo(
            backend=self._dialect,
            server_version=server_version,
            layout=layout,
            namespace=self.table_fullname,
            url=self._url,
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        await self._gateway.close()
        if self._owns_engine:
            await self._engine.dispose()
