"""Creating the table, and bringing one found in place up to statekit's layout (what
``statekit init`` runs).

Only additions and widenings that keep every row as it is: the scopes table beside the
entries table (expiry; no scope has a deadline yet), the identity indexes (erasure and
access requests), the ``version`` column (existing rows
start at version 1), the unique ``(scope_key, state_key)`` the upsert
targets (it fails, changing nothing, if the table holds duplicate rows: remove them
first), ``VARCHAR`` columns widened to the limits statekit accepts and, on PostgreSQL,
``state_key`` given ``COLLATE "C"``. Naive timestamps and a nullable ``value_json`` are
served as they are and left alone; so are missing context columns, which only the host
can fill.
"""

from __future__ import annotations

from sqlalchemy import MetaData, Table, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateIndex, CreateSchema, CreateTable

from statekit.backends.sql.faults import TRANSLATED, translate
from statekit.backends.sql.gateway import Gateway
from statekit.backends.sql.layout import Observed, observe
from statekit.backends.sql.schema import (
    COLUMN_WIDTHS,
    DEFAULT_SCHEMA,
    scopes_table,
    state_table,
    unique_name,
)

#: What :func:`upgrade_steps` says when it creates the scopes table.
CREATE_SCOPES = "create the scopes table {name} (expiry; no scope has a deadline yet)"
#: What :func:`upgrade_steps` says when it adds identity indexes.
CREATE_IDENTITY_INDEXES = "add the identity indexes {names} (erasure and access requests)"


async def create_table(engine: AsyncEngine, gateway: Gateway, table: Table) -> None:
    """Create statekit's table named like ``table`` with its identity indexes, and the
    scopes table beside it (and their PostgreSQL schema, unless ``public``) where absent;
    a table already there is left as it is (its indexes too: building them on a large
    table is :func:`upgrade_table`'s, run by ``statekit init``)."""
    table = state_table(MetaData(), table.name, table.schema, dialects=(engine.dialect.name,))
    scopes = scopes_table(MetaData(), table.name, table.schema)
    for attempt in (1, 2):
        try:
            # Looked up on a connection of its own: on SQLite a transaction that reads
            # before it writes cannot wait for another process's write lock (SQLite
            # answers "database is locked" at once rather than risk a deadlock), and
            # processes starting together all create the table.
            async with gateway.guard(), engine.connect() as conn:
                found, complete = await conn.run_sync(_present, table, scopes)
            if complete:
                return  # every statement below would be a no-op: no write transaction
            async with gateway.guard(), engine.begin() as conn:
                if table.schema not in (None, DEFAULT_SCHEMA):
                    await conn.execute(CreateSchema(table.schema, if_not_exists=True))
                await conn.execute(CreateTable(table, if_not_exists=True))
                if not found:
                    for index in table.indexes:
                        await conn.execute(CreateIndex(index, if_not_exists=True))
                for ddl in _scopes_ddl(scopes):
                    await conn.execute(ddl)
            return
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError) as exc:
            # PostgreSQL's IF NOT EXISTS can still lose a race with another process
            # creating the same table; once that one has committed, ours is a no-op.
            if attempt == 2:
                raise translate(exc, "create the schema", address=gateway.address) from exc
        except TRANSLATED as exc:
            raise translate(exc, "create the schema", address=gateway.address) from exc


async def upgrade_table(engine: AsyncEngine, gateway: Gateway, table: Table) -> list[str]:
    """Apply :func:`upgrade_steps` to the table named like ``table``, in one
    transaction; what was changed."""
    try:
        async with gateway.guard(), engine.begin() as conn:
            observed = await conn.run_sync(observe, table)
            steps = upgrade_steps(observed, table, engine.dialect)
            for _, ddl in steps:
                for statement in ddl.split(";\n"):
                    await conn.execute(text(statement))
    except TRANSLATED as exc:
        raise translate(exc, "upgrade the schema", address=gateway.address) from exc
    return [what for what, _ in steps]


def _present(conn: Connection, table: Table, scopes: Table) -> tuple[bool, bool]:
    """``(the entries table exists, it and the scopes table with its indexes all do)``:
    read-only, so a store opening a table already in place (every ``statekit get``)
    checks it without the DDL transaction that would change nothing."""
    inspector = inspect(conn)
    if not inspector.has_table(table.name, schema=table.schema):
        return False, False
    if not inspector.has_table(scopes.name, schema=scopes.schema):
        return True, False
    present = {index["name"] for index in inspector.get_indexes(scopes.name, scopes.schema)}
    return True, all(index.name in present for index in scopes.indexes)


def _scopes_ddl(scopes: Table) -> list[CreateTable | CreateIndex]:
    return [
        CreateTable(scopes, if_not_exists=True),
        *(CreateIndex(index, if_not_exists=True) for index in scopes.indexes),
    ]


def upgrade_steps(observed: Observed, table: Table, dialect: Dialect) -> list[tuple[str, str]]:
    """``(what it does, DDL)`` for each change ``observed`` needs, in order (a DDL of
    several statements separates them by ``";\\n"``).

    None for a table missing columns other than ``version``: it is not a shape of
    statekit's table (nor the original store's), and adding columns to it would not make
    it one; its layout stays not ok and says why."""
    if not observed.exists or observed.missing_columns:
        return []
    quote = dialect.identifier_preparer
    name = quote.format_table(table)
    steps: list[tuple[str, str]] = []
    if not observed.shape.versions:
        steps.append(
            (
                "add the version column (existing entries start at version 1)",
                f"ALTER TABLE {name} ADD COLUMN version BIGINT NOT NULL DEFAULT 1",
            )
        )
    if not observed.unique:
        steps.append(
            (
                "add the unique (scope_key, state_key)",
                f"CREATE UNIQUE INDEX {quote.quote(unique_name(table.name))} "
                f"ON {name} (scope_key, state_key)",
            )
        )
    if dialect.name == "postgresql":  # SQLite neither enforces widths nor needs a collation
        steps += _retype_steps(observed, name, dialect)
    if not observed.scopes_exist:
        scopes = scopes_table(MetaData(), table.name, table.schema)
        ddl = ";\n".join(str(d.compile(dialect=dialect)).strip() for d in _scopes_ddl(scopes))
        steps.append((CREATE_SCOPES.format(name=observed.scopes_fullname), ddl))
    if observed.missing_indexes:
        steps.append(_index_step(observed, table, dialect))
    return steps


def _index_step(observed: Observed, table: Table, dialect: Dialect) -> tuple[str, str]:
    """The identity indexes ``observed`` lacks, created (on PostgreSQL this holds off
    writes to the table while each is built; docs/backends/sql.md has the alternative)."""
    full = state_table(MetaData(), table.name, table.schema, dialects=(dialect.name,))
    indexes = {str(index.name): index for index in full.indexes}
    ddl = ";\n".join(
        str(CreateIndex(indexes[name]).compile(dialect=dialect)).strip()
        for name in observed.missing_indexes
    )
    return CREATE_IDENTITY_INDEXES.format(names=", ".join(observed.missing_indexes)), ddl


def _retype_steps(observed: Observed, name: str, dialect: Dialect) -> list[tuple[str, str]]:
    quote = dialect.identifier_preparer
    steps: list[tuple[str, str]] = []
    retyped = dict(observed.narrow)
    if not observed.shape.code_point_keys:
        retyped["state_key"] = COLUMN_WIDTHS["state_key"]
    for column, width in retyped.items():
        collation = ' COLLATE "C"' if column == "state_key" else ""
        steps.append(
            (
                f"make {column} VARCHAR({width}){collation}",
                f"ALTER TABLE {name} ALTER COLUMN {quote.quote(column)} "
                f"TYPE VARCHAR({width}){collation}",
            )
        )
    return steps
