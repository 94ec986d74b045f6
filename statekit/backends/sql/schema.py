"""The one table every SQL deployment of statekit uses, as SQLAlchemy Core metadata.

The columns are those of the original SQL-only store plus ``version``, so existing rows
keep working. ``state_key`` compares in code-point order on every dialect: PostgreSQL
declares it ``COLLATE "C"`` (byte order of UTF-8, which is code-point order), SQLite's
default ``BINARY`` collation already compares UTF-8 bytes. The unique constraint on
``(scope_key, state_key)`` is the only index the queries need: point reads, the snapshot's
``scope_key IN (...)``, and prefix listings (a range on ``state_key`` with ``ORDER BY`` and
``LIMIT``) are all scans of it.

Hosts with their own migrations add :data:`metadata` (or a table made by
:func:`state_table` on their own ``MetaData``) to Alembic's ``target_metadata``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from statekit.backends.base import CONTEXT_FIELDS, OPTIONAL_CONTEXT_FIELDS

DEFAULT_TABLE_NAME = "statekit_state"

#: The context columns, in :class:`statekit.backends.base.ScopeContext` order.
CONTEXT_COLUMNS = CONTEXT_FIELDS
#: The context columns every row has (the rest are ``NULL`` where the event had none).
REQUIRED_CONTEXT_COLUMNS = tuple(n for n in CONTEXT_COLUMNS if n not in OPTIONAL_CONTEXT_FIELDS)
# The original store's width for the scope's name; every other context column has 255.
_CONTEXT_WIDTHS = {"scope": 32}


def _id_type() -> BigInteger:
    # SQLite only auto-increments an ``INTEGER PRIMARY KEY`` (the rowid alias).
    return BigInteger().with_variant(Integer(), "sqlite")


def _key_type() -> String:
    # Code-point order on PostgreSQL whatever the database's default collation is.
    return String(255).with_variant(String(255, collation="C"), "postgresql")


def _context_columns(names: tuple[str, ...], *, nullable: bool) -> list[Column[str]]:
    return [
        Column(name, String(_CONTEXT_WIDTHS.get(name, 255)), nullable=nullable) for name in names
    ]


def state_table(
    metadata: MetaData, table_name: str = DEFAULT_TABLE_NAME, schema: str | None = None
) -> Table:
    """Declare statekit's table on ``metadata`` (a host's own, for its migrations).

    The unique constraint is named ``uq_<table>_scope_key_state_key``; the upsert
    targets its columns.
    """
    return Table(
        table_name,
        metadata,
        Column("id", _id_type(), primary_key=True, autoincrement=True),
        *_context_columns(REQUIRED_CONTEXT_COLUMNS, nullable=False),
        Column("scope_key", String(255), nullable=False),
        Column("state_key", _key_type(), nullable=False),
        Column("value_json", Text(), nullable=False),
        *_context_columns(OPTIONAL_CONTEXT_FIELDS, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("version", BigInteger(), nullable=False, server_default=text("1")),
        UniqueConstraint("scope_key", "state_key", name=f"uq_{table_name}_scope_key_state_key"),
        schema=schema,
    )


#: statekit's table with the default name, for ``target_metadata`` in Alembic.
metadata = MetaData()
state_table(metadata)

#: Column names ``describe`` checks for: every column of the table, in its order.
EXPECTED_COLUMNS = tuple(column.name for column in state_table(MetaData()).columns)
