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
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import URL, Table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import MetaData

from statekit.backends.base import (
    BackendInfo,
    Capability,
)
from statekit.backends.sql import driver
from statekit.backends.sql.coalesce import Coalescer
from statekit.backends.sql.engine import build_engine, built_here, is_memory_sqlite
from statekit.backends.sql.expiry import Expiry
from statekit.backends.sql.expiry_sql import ExpirySQL
from statekit.backends.sql.faults import TRANSLATED, translate
from statekit.backends.sql.gateway import CLOSED_MESSAGE, DriverRun, Gateway
from statekit.backends.sql.identity import Erasure
from statekit.backends.sql.identity_sql import IdentitySQL
from statekit.backends.sql.layout import Observed, observe_table, server_and_layout
from statekit.backends.sql.loop_reads import LoopReads
from statekit.backends.sql.naming import check_table
from statekit.backends.sql.options import parse_url, split_options
from statekit.backends.sql.reads import Reads
from statekit.backends.sql.schema import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE_NAME,
    TableShape,
    state_table,
)
from statekit.backends.sql.statements import (
    EXPORT_BATCH_SIZE,
    DriverStatement,
    Statements,
)
from statekit.backends.sql.upgrade import create_table, upgrade_table
from statekit.backends.sql.urlparams import driver_arguments
from statekit.backends.sql.writes import Writes
from statekit.errors import (
    ConfigurationError,
    StoreClosedError,
    UnsupportedCapabilityError,
)
from statekit.telemetry.recorder import Recorder
from statekit.url import BackendURL, mask_password

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["EXPORT_BATCH_SIZE", "SQLBackend"]


def _capabilities(shape: TableShape) -> frozenset[Capability]:
    found = (
        (Capability.VERSIONS, shape.versions),
        (Capability.EXPIRY, shape.expiry),
        (Capability.ERASURE, shape.erasure),
    )
    return frozenset(capability for capability, present in found if present)


def _keeps_idle(engine: AsyncEngine) -> int:
    """How many connections the gateway keeps between calls that follow each other (see
    :class:`.gateway.Gateway`): on an SQLite file, the pool's size (the connections the
    pool itself keeps open); on PostgreSQL, an in-memory database and a host's engine
    (whose pool gets each connection back as the call returns), none."""
    pool = engine.pool
    if engine.dialect.name != "sqlite" or isinstance(pool, StaticPool) or not built_here(engine):
        return 0
    return int(getattr(pool, "size", lambda: 0)())


def _reads_on_loop_for(url: URL, wanted: bool | None) -> bool:
    """``reads_on_loop`` for an engine built from ``url``: as asked, else on for an SQLite
    file (see :mod:`.loop_reads`). A read on the loop skips the hop to aiosqlite's thread
    and back, which costs several times SQLite's own work for a point read; one that
    runs long moves to the thread after :data:`.loop_reads.LOOP_BUDGET`."""
    if wanted is not None:
        return wanted
    return url.get_backend_name() == "sqlite" and not is_memory_sqlite(url)


class SQLBackend(Reads, Writes, Erasure):
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
    absent; without the scopes table beside it (``<table>_scopes``) ``EXPIRY`` is dropped,
    and without the identity indexes (``ix_<table>_<field>``) ``ERASURE``.
    :meth:`upgrade_schema` brings such a table up to statekit's. ``pool_size``
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

    Expiry (see :mod:`.expiry`): deadlines are POSIX seconds from :attr:`clock`, compared
    in every statement as parameters, never with the server's time.
    """

    #: Until first use (or :meth:`describe`), what statekit's own tables have; then what
    #: the tables found have: no ``VERSIONS`` without a ``version`` column, no ``EXPIRY``
    #: without the scopes table, no ``ERASURE`` without the identity indexes.
    capabilities: frozenset[Capability] = frozenset(
        {Capability.VERSIONS, Capability.EXPIRY, Capability.ERASURE}
    )
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
        coalesce: bool = True,
        owns_client: bool = False,
        reads_on_loop: bool = False,
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
        self._table = state_table(MetaData(), table_name, schema, dialects=(dialect,))
        check_table(self._table)
        self._create = create_schema
        self._ready = False  # until the table is known to exist and its shape is known
        # An in-memory SQLite database is one shared connection: use it one task at a time.
        self._shared_connection = isinstance(engine.pool, StaticPool)
        self._gateway = Gateway(
            engine,
            1 if self._shared_connection else pool_size,
            pool_timeout,
            keep_idle=_keeps_idle(engine),
        )
        self._loop_reads = self._reads_on_loop(reads_on_loop, pool_timeout)
        # Concurrent sets and reads sent together (see .coalesce); off: each call alone.
        self._coalescer = (
            Coalescer(
                self._gateway,
                postgres=dialect == "postgresql",
                timeout=pool_timeout,
                on_batch=self._coalesced,
            )
            if coalesce
            else None
        )
        # ``_statements`` is built by _adopt, for the table's shape as found: one built now
        # for statekit's own shape would be compiled for nothing by every process.
        self._expiry: Expiry | None = None
        self._identity: IdentitySQL | None = None
        #: The time deadlines are set and checked by (POSIX seconds); tests replace it.
        self.clock: Callable[[], float] = time.time

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
            coalesce=opts.coalesce,
            owns_client=True,
            reads_on_loop=_reads_on_loop_for(parsed, opts.reads_on_loop),
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

    @property
    def recorder(self) -> Recorder:
        """Where the gate's waits and places in use (and a coalescer's batches) go."""
        return self._gateway.recorder

    @property
    def telemetry_attributes(self) -> dict[str, str | int]:
        """The database as OpenTelemetry attributes: engine, database name (an SQLite
        file's name without its directories), host and port; never user or password."""
        url = self._engine.url
        attributes: dict[str, str | int] = {"db.system.name": self._dialect}
        if url.database:
            attributes["db.namespace"] = url.database.replace("\\", "/").rsplit("/", 1)[-1]
        if url.host:
            attributes["server.address"] = url.host
            if url.port:
                attributes["server.port"] = url.port
        return attributes

    # ---- plumbing -----------------------------------------------------------------

    def _coalesced(self, size: int) -> None:
        self._gateway.recorder.batch("coalesced", size)

    def _reads_on_loop(self, wanted: bool, timeout: float) -> LoopReads | None:
        """The connection reads run on the event loop with (see :mod:`.loop_reads`)."""
        if not wanted:
            return None
        if self._dialect != "sqlite":
            raise ConfigurationError("reads_on_loop is for SQLite only")
        if self._shared_connection or is_memory_sqlite(self._engine.url):
            raise ConfigurationError(
                "reads_on_loop needs an SQLite file: an in-memory database is one "
                "connection, which another cannot read"
            )
        return LoopReads(self._engine, timeout)

    def _check_open(self) -> None:
        if self._gateway.closed:
            raise StoreClosedError(CLOSED_MESSAGE)

    async def _prepare(self) -> None:
        self._check_open()
        await self._gateway.finish(self._prepare_table())

    async def _prepare_table(self) -> None:
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
        self._table = state_table(
            MetaData(), self._table.name, self._table.schema, shape=shape, indexes=False
        )
        dialect = self._engine.dialect
        self._statements = statements = Statements(self._table, dialect, shape)
        self._expiry = (
            Expiry(
                ExpirySQL(self._table, statements.scopes, dialect, shape),
                statements,
                postgres=self._dialect == "postgresql",
            )
            if shape.expiry
            else None
        )
        self._identity = (
            IdentitySQL(self._table, statements.scopes, dialect, shape, statements.export)
            if shape.erasure
            else None
        )
        self.capabilities = _capabilities(shape)
        self._ready = True

    def _require_versions(self) -> None:
        # The table was found without a version column after the store's check passed
        # (capabilities are only known once the table has been seen).
        if Capability.VERSIONS not in self.capabilities:
            raise UnsupportedCapabilityError(
                f"{self.table_fullname} has no version column: conditional sets and "
                "versions are unavailable (`statekit init` adds the column)"
            )

    def _require_expiry(self) -> Expiry:
        if self._expiry is None:
            raise UnsupportedCapabilityError(
                f"{self.table_fullname} has no scopes table beside it: expiry is "
                "unavailable (`statekit init` creates the table)"
            )
        return self._expiry

    async def _run(
        self,
        run: DriverRun,
        sql: str,
        arguments: Any,
        what: str,
        *,
        read: bool = False,
        atomic: bool = True,
        coalesce: bool = False,
    ) -> Any:
        """``run(connections, sql, arguments)`` on a driver connection, in its turn
        (``atomic``: all or nothing, see :meth:`.gateway.Gateway.run`); ``coalesce``: a
        single statement that may go in a batch with concurrent ones (see
        :mod:`.coalesce`)."""
        if not self._ready:
            await self._prepare()
        if coalesce and self._coalescer is not None and run is driver.run:
            return await self._coalescer.run(sql, arguments, what, read=read)
        return await self._gateway.run(run, sql, arguments, what, read=read, atomic=atomic)

    async def _upsert(self, sql: str, arguments: Sequence[Any]) -> Any:
        """A set's one unconditional statement, coalesced: :meth:`_run` without the
        checks ``set`` has made (one coroutine less per call)."""
        if self._coalescer is not None:
            return await self._coalescer.run(sql, arguments, "set", read=False)
        return await self._gateway.run(driver.run, sql, arguments, "set", read=False)

    async def _rows(
        self,
        statement: DriverStatement,
        params: Mapping[str, Any],
        what: str,
        *,
        read: bool = False,
        coalesce: bool = False,
    ) -> Sequence[Any]:
        """Run one statement on its own (no transaction) and fetch its rows; a read on
        the event loop with ``reads_on_loop`` (see :mod:`.loop_reads`)."""
        arguments = statement.arguments(params)
        loop_reads = self._loop_reads
        if read and loop_reads is not None:
            if not self._ready:
                await self._prepare()
            found = self._gateway.on_loop(loop_reads.rows, statement.sql, arguments, what)
            if found is not None:
                return found
        rows: Sequence[Any] = await self._run(
            driver.run, statement.sql, arguments, what, read=read, coalesce=coalesce
        )
        return rows

    async def _program(self, program: driver.Program, what: str, *, transaction: bool) -> Any:
        """Run ``program`` on one connection (see :func:`.driver.run_program`)."""
        arguments = (program, transaction)
        return await self._run(driver.run_program, "", arguments, what, atomic=transaction)

    async def create_schema(self) -> None:
        """Create the table, the scopes table beside it (and the PostgreSQL schema) where
        absent; safe to call repeatedly.

        A table already there is left as it is (:meth:`upgrade_schema` changes it) and
        the backend adopts it as found (see :attr:`capabilities`)."""
        self._check_open()
        await self._gateway.finish(self._create_table())

    async def _create_table(self) -> None:
        async with self._gateway.schema_lock():
            await create_table(self._engine, self._gateway, self._table)
            await self._adopt()

    async def upgrade_schema(self) -> list[str]:
        """Create the table if absent, then bring a table found in place up to statekit's
        layout; what ``statekit init`` runs. Returns what was changed (nothing: ``[]``).

        Only changes that keep every row: the scopes table (expiry; no deadline yet),
        the identity indexes (erasure and access requests), the ``version`` column
        (entries start at 1, and the backend then has ``Capability.VERSIONS``), the unique
        ``(scope_key, state_key)`` (refused, changing nothing, while duplicate rows
        exist), columns widened to the limits statekit accepts and PostgreSQL's
        ``COLLATE "C"`` on ``state_key``; all in one transaction. Naive timestamps and a
        nullable ``value_json`` are served as they are and kept. A table it cannot bring
        up (one missing columns other than ``version``) is left as it is: its
        :meth:`describe` layout says why, and operations raise ConfigurationError.
        """
        self._check_open()
        return await self._gateway.finish(self._upgrade_table())

    async def _upgrade_table(self) -> list[str]:
        async with self._gateway.schema_lock():
            self._ready = False  # operations wait for the upgraded table's statements
            # A table found in place is upgraded first, so the scopes table it lacks is
            # one of the changes reported; a missing table is then created whole.
            changes = await upgrade_table(self._engine, self._gateway, self._table)
            await create_table(self._engine, self._gateway, self._table)
            with contextlib.suppress(ConfigurationError):
                await self._adopt()
        return changes

    # ---- lifecycle ----------------------------------------------------------------

    async def describe(self) -> BackendInfo:
        self._check_open()
        server_version, observed = await self._gateway.finish(self._observe())
        if observed.exists:
            self.capabilities = _capabilities(observed.shape)
        return BackendInfo(
            backend=self._dialect,
            server_version=server_version,
            layout=observed.layout,
            namespace=self.table_fullname,
            url=self._url,
            warnings=observed.warnings,
        )

    async def _observe(self) -> tuple[str, Observed]:
        try:
            async with self._gateway.guard(), self._engine.connect() as conn:
                return await server_and_layout(conn, self._table)
        except TRANSLATED as exc:
            raise translate(exc, "describe", address=self._gateway.address) from exc

    async def aclose(self) -> None:
        """Close the backend: every later call raises :class:`StoreClosedError`; calls
        still waiting for a connection raise it too, statements under way finish first
        (``aclose`` waits for them at most ``pool_timeout``). Closing again does nothing."""
        if self._gateway.closed:
            return
        await self._gateway.close()
        if self._coalescer is not None:
            await self._coalescer.aclose()
        if self._loop_reads is not None:
            self._loop_reads.close()
        if self._owns_engine:
            await self._engine.dispose()
