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

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import MetaData

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
from statekit.backends.sql.gateway import CLOSED_MESSAGE, DriverRun, Gateway
from statekit.backends.sql.layout import observe_table, server_and_layout
from statekit.backends.sql.naming import check_table
from statekit.backends.sql.options import parse_url, split_options
from statekit.backends.sql.schema import (
    CONTEXT_COLUMNS,
    DEFAULT_SCHEMA,
    DEFAULT_TABLE_NAME,
    state_table,
)
from statekit.backends.sql.statements import (
    EXPORT_BATCH_SIZE,
    DriverStatement,
    Statements,
    prefix_successor,
)
from statekit.backends.sql.upgrade import create_table, upgrade_table
from statekit.backends.sql.urlparams import driver_arguments
from statekit.errors import (
    ConfigurationError,
    StoreClosedError,
    UnsupportedCapabilityError,
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
    migrations own it (see :func:`statekit.backends.sql.state_table`).

    ``table_name`` (and ``schema``) must be lower-case identifiers, not a system
    catalog's (``pg_*``, ``sqlite_*``, ``information_schema``), short enough for the
    names derived from them (40 characters for a table): else :class:`ConfigurationError`
    here, before any I/O. On PostgreSQL every statement names the schema (``public``
    unless given), never relying on ``search_path``.

    Before its first operation (or :meth:`describe`) the backend looks at the table once
    and serves it as found: without a ``version`` column :attr:`capabilities` drops
    ``VERSIONS`` (a versioned call made first raises
    :class:`~statekit.errors.UnsupportedCapabilityError` after the look); naive
    timestamps hold UTC whatever the session's time zone; a ``NULL`` ``value_json`` is
    absent. :meth:`upgrade_schema` brings such a table up to statekit's. ``pool_size``
    (``from_url``: the pool's size + overflow) admits that many operations at once, first
    come first served, each waiting at most ``pool_timeout`` seconds for its turn
    (:class:`~statekit.errors.BackendTimeoutError`); give a host engine's pool size here
    when many tasks share the backend. An in-memory SQLite database (one shared
    connection) admits one operation at a time whatever ``pool_size`` says.

    One backend may serve one event loop after another (a module-level store across
    ``asyncio.run()`` calls): it moves to each new loop on its first call there, with a
    new pool on PostgreSQL, whose connections belong to one loop; two loops running at
    once get :class:`~statekit.errors.StateBackendError`. After :meth:`aclose` every
    method raises :class:`~statekit.errors.StoreClosedError`.
    """

    #: Until first use (or :meth:`describe`), what statekit's own table has; then what
    #: the table found has: no ``VERSIONS`` without a ``version`` column.
    capabilities: frozenset[Capability] = frozenset({Capability.VERSIONS})
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
        if dialect == "postgresql" and schema is None:
            schema = DEFAULT_SCHEMA  # statements name it: search_path never picks the table
        self._table = state_table(MetaData(), table_name, schema)
        check_table(self._table)
        self._create = create_schema
        self._ready = False  # until the table is known to exist and its shape is known
        # An in-memory SQLite database is one shared connection: use it one task at a time.
        self._shared_connection = isinstance(engine.pool, StaticPool)
        self._gateway = Gateway(engine, 1 if self._shared_connection else pool_size, pool_timeout)
        self._statements = Statements(self._table, engine.dialect)

    @classmethod
    def from_url(cls, url: str | BackendURL, **options: Any) -> Self:
        """A backend for ``url``; no I/O until first use. Keyword options win over URL
        query parameters; unknown options raise :class:`ConfigurationError`."""
        parsed, opts = split_options(parse_url(BackendURL(url).for_first_at_parsers()), options)
        parsed, connect_args = driver_arguments(parsed)
        return cls(
            build_engine(parsed, opts, connect_args),
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

    def _check_open(self) -> None:
        if self._gateway.closed:
            raise StoreClosedError(CLOSED_MESSAGE)

    async def _prepare(self) -> None:
        self._check_open()
        async with self._gateway.schema_lock():
            if self._ready:
                return
            if self._create:
                await create_table(self._engine, self._gateway, self._table)
            await self._adopt()

    async def _adopt(self) -> None:
        """Declare the table as it is found (see :class:`.schema.TableShape`), so the
        statements fit it: once, before the first operation."""
        observed = await observe_table(self._engine, self._gateway, self._table)
        if observed.blocking:
            raise ConfigurationError(
                f"The SQL backend cannot use {self.table_fullname}: "
                f"{'; '.join(observed.blocking)} (`statekit init` creates or upgrades it)"
            )
        shape = observed.shape
        self._table = state_table(MetaData(), self._table.name, self._table.schema, shape=shape)
        self._statements = Statements(self._table, self._engine.dialect, shape)
        self.capabilities = frozenset({Capability.VERSIONS} if shape.versions else ())
        self._ready = True

    def _require_versions(self) -> None:
        # The table was found without a version column after the store's check passed
        # (capabilities are only known once the table has been seen).
        if Capability.VERSIONS not in self.capabilities:
            raise UnsupportedCapabilityError(
                f"{self.table_fullname} has no version column: conditional sets and "
                "versions are unavailable (`statekit init` adds the column)"
            )

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
        """Create the table (and PostgreSQL schema) if absent; safe to call repeatedly.

        A table already there is left as it is (:meth:`upgrade_schema` changes it) and
        the backend adopts it as found (see :attr:`capabilities`)."""
        self._check_open()
        async with self._gateway.schema_lock():
            await create_table(self._engine, self._gateway, self._table)
            await self._adopt()

    async def upgrade_schema(self) -> list[str]:
        """Create the table if absent, then bring a table found in place up to statekit's
        layout; what ``statekit init`` runs. Returns what was changed (nothing: ``[]``).

        Only changes that keep every row: the ``version`` column (entries start at 1,
        and the backend then has ``Capability.VERSIONS``), the unique
        ``(scope_key, state_key)`` (refused, changing nothing, while duplicate rows
        exist), columns widened to the limits statekit accepts and PostgreSQL's
        ``COLLATE "C"`` on ``state_key``; all in one transaction. Naive timestamps and a
        nullable ``value_json`` are served as they are and kept. A table it cannot bring
        up (one missing columns other than ``version``) is left as it is: its
        :meth:`describe` layout says why, and operations raise ConfigurationError.
        """
        self._check_open()
        async with self._gateway.schema_lock():
            self._ready = False  # operations wait for the upgraded table's statements
            await create_table(self._engine, self._gateway, self._table)
            changes = await upgrade_table(self._engine, self._gateway, self._table)
            with contextlib.suppress(ConfigurationError):
                await self._adopt()
        return changes

    # ---- reads --------------------------------------------------------------------

    async def get(self, scope_key: str, state_key: str) -> str | None:
        if not self._ready:
            await self._prepare()
        params = {"scope_key": scope_key, "state_key": state_key}
        rows = await self._rows(self._statements.get, params, "get", read=True)
        return rows[0][0] if rows else None

    async def get_versioned(self, scope_key: str, state_key: str) -> tuple[str | None, int]:
        if not self._ready:
            await self._prepare()
        self._require_versions()
        params = {"scope_key": scope_key, "state_key": state_key}
        statement = self._statements.get_versioned
        rows = await self._rows(statement, params, "get", read=True)
        return (rows[0][0], rows[0][1]) if rows else (None, 0)

    async def read_scopes(self, scope_keys: Sequence[str]) -> dict[str, dict[str, str]]:
        snapshot: dict[str, dict[str, str]] = {scope_key: {} for scope_key in scope_keys}
        if not snapshot:
            return snapshot
        if not self._ready:
            await self._prepare()
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
        if not self._ready:
            await self._prepare()
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
            async with self._gateway.guard(streaming=True), self._engine.connect() as conn:
                try:
                    result = await conn.stream(
                        self._statements.export.execution_options(yield_per=EXPORT_BATCH_SIZE)
                    )
                    async for row in result:
                        yield self._entry(row)
                        self._check_open()
                finally:
                    if self._gateway.closed:
                        # The pool may be disposed already: close the connection itself.
                        await conn.invalidate()
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
                self._check_open()
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
        if not self._ready:
            await self._prepare()
        if expected_version is not None:
            self._require_versions()
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
        if not self._ready:
            await self._prepare()
        statements = self._statements
        now = statements.timestamp(datetime.now(timezone.utc))
        rows = [
            statements.row(w.scope_key, w.state_key, w.value_json, w.context, now) for w in writes
        ]
        # The driver applies the rows in order, in one transaction (one round trip on
        # PostgreSQL).
        await self._run(driver.run_many, statements.upsert_many.sql, rows, "set many")

    async def delete(self, scope_key: str, state_key: str) -> bool:
        if not self._ready:
            await self._prepare()
        params = {"scope_key": scope_key, "state_key": state_key}
        return bool(await self._rows(self._statements.delete, params, "delete"))

    async def clear(self) -> None:
        if not self._ready:
            await self._prepare()
        await self._rows(self._statements.clear, {}, "clear")

    # ---- lifecycle ----------------------------------------------------------------

    async def describe(self) -> BackendInfo:
        self._check_open()
        try:
            async with self._gateway.guard(), self._engine.connect() as conn:
                server_version, observed = await server_and_layout(conn, self._table)
        except TRANSLATED as exc:
            raise translate(exc, "describe") from exc
        if observed.exists and not observed.shape.versions:
            self.capabilities = frozenset()
        return BackendInfo(
            backend=self._dialect,
            server_version=server_version,
            layout=observed.layout,
            namespace=self.table_fullname,
            url=self._url,
            warnings=observed.warnings,
        )

    async def aclose(self) -> None:
        """Close the backend: every later call raises :class:`StoreClosedError`; calls
        still waiting for a connection raise it too, statements under way finish first
        (``aclose`` waits for them at most ``pool_timeout``). Closing again does nothing."""
        if self._gateway.closed:
            return
        await self._gateway.close()
        if self._owns_engine:
            await self._engine.dispose()
