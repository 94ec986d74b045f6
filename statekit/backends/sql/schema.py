"""The one table every SQL deployment of statekit uses, as SQLAlchemy Core metadata.

The columns are those of the original SQL-only store plus ``version``, so existing rows
keep working. Column widths come from the limits of :mod:`statekit.validation`, so
whatever the store accepts fits. ``state_key`` compares in code-point order on every
dialect: PostgreSQL declares it ``COLLATE "C"`` (byte order of UTF-8, which is code-point
order), SQLite's default ``BINARY`` collation already compares UTF-8 bytes. The unique
constraint on ``(scope_key, state_key)`` is the only index the operations on a scope
need: point reads, the snapshot's ``scope_key IN (...)``, and prefix listings (a range on
``state_key`` with ``ORDER BY`` and ``LIMIT``) are all scans of it. The identity indexes
(:data:`IDENTITY_INDEXES`) serve erasure and access requests, which find scopes by who
they belong to.

A table the backend finds in place (a host's, the original store's) may differ in the
ways :class:`TableShape` lists; the backend then declares the table as it is found, so
its statements fit it.

Expiry lives in a second table beside it, ``<table>_scopes`` (:func:`scopes_table`): one
row per scope with a deadline, so the entries table keeps the original store's columns.

Hosts with their own migrations add :data:`metadata` (or the tables made by
:func:`state_table` and :func:`scopes_table` on their own ``MetaData``) to Alembic's
``target_metadata``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from statekit.backends.base import CONTEXT_FIELDS, OPTIONAL_CONTEXT_FIELDS
from statekit.validation import (
    MAX_CONTEXT_FIELD_LENGTH,
    MAX_SCOPE_KEY_LENGTH,
    MAX_STATE_KEY_LENGTH,
)

DEFAULT_TABLE_NAME = "statekit_state"
#: Where the table lives on PostgreSQL when no ``schema`` is given.
DEFAULT_SCHEMA = "public"

#: The context columns, in :class:`statekit.backends.base.ScopeContext` order.
CONTEXT_COLUMNS = CONTEXT_FIELDS
#: The context columns every row has (the rest are ``NULL`` where the event had none).
REQUIRED_CONTEXT_COLUMNS = tuple(n for n in CONTEXT_COLUMNS if n not in OPTIONAL_CONTEXT_FIELDS)
# The original store's width for the scope's name (the longest, "conversation", has 12).
_CONTEXT_WIDTHS = {"scope": 32}


@dataclass(frozen=True, slots=True)
class TableShape:
    """Where a table found in place may differ from the one statekit creates, and still
    serve it. The defaults are statekit's own table; the original store's has no
    ``version``, naive timestamps, a nullable ``value_json`` and the database's default
    collation."""

    #: A ``version`` column: without one, the backend lacks ``Capability.VERSIONS``.
    versions: bool = True
    #: ``TIMESTAMP WITH TIME ZONE``; else naive timestamps, which hold UTC.
    aware_timestamps: bool = True
    #: ``value_json`` may be ``NULL``: such a row reads as absent everywhere.
    nullable_values: bool = False
    #: ``state_key`` sorts in code-point order by itself (PostgreSQL: ``COLLATE "C"``);
    #: else the statements ask for that order (without the index's help).
    code_point_keys: bool = True
    #: The scopes table beside it (:func:`scopes_table`): without one, the backend lacks
    #: ``Capability.EXPIRY``.
    expiry: bool = True
    #: Every index of :data:`IDENTITY_INDEXES`: without them, the backend lacks
    #: ``Capability.ERASURE`` (a find or an erase would scan the whole table).
    erasure: bool = True


#: The table statekit creates.
STATEKIT_SHAPE = TableShape()


def _id_type() -> BigInteger:
    # SQLite only auto-increments an ``INTEGER PRIMARY KEY`` (the rowid alias).
    return BigInteger().with_variant(Integer(), "sqlite")


def _key_type(code_point_order: bool) -> String:
    if not code_point_order:
        return String(MAX_STATE_KEY_LENGTH)
    # Code-point order on PostgreSQL whatever the database's default collation is.
    return String(MAX_STATE_KEY_LENGTH).with_variant(
        String(MAX_STATE_KEY_LENGTH, collation="C"), "postgresql"
    )


def _context_columns(names: tuple[str, ...], *, nullable: bool) -> list[Column[str]]:
    return [
        Column(name, String(_CONTEXT_WIDTHS.get(name, MAX_CONTEXT_FIELD_LENGTH)), nullable=nullable)
        for name in names
    ]


def unique_name(table_name: str) -> str:
    """The name of the unique ``(scope_key, state_key)`` the upsert targets."""
    return f"uq_{table_name}_scope_key_state_key"


#: The indexes that find a scope by identity (erasure and access requests), by the field
#: whose filter each serves: its columns, the scope name whose rows alone it holds
#: (``None``: every row), and whether rows where the field is ``NULL`` are left out (a
#: filter never matches ``NULL``; most events carry no bot, workspace or thread). The
#: fields of every scope's identity are the least selective (a runner, a workspace can
#: hold most of the table), so their indexes end with ``scope_key``: a find reads their
#: matches in key order, a batch at a time. Each id of one scope name is indexed on that
#: scope's rows only (an actor scope's ``conversation_id`` is never matched), so each
#: entry is in at most two of these besides the four of every scope. ``actor_type`` and
#: ``subject_type`` are only filtered on with their id.
IDENTITY_INDEXES: Mapping[str, tuple[tuple[str, ...], str | None, bool]] = {
    "runner_id": (("runner_id", "scope_key"), None, False),
    "binding_identity": (("binding_identity", "scope_key"), None, False),
    "bot_id": (("bot_id", "scope_key"), None, True),
    "workspace_id": (("workspace_id", "scope_key"), None, True),
    "conversation_id": (("conversation_id",), "conversation", False),
    "thread_id": (("thread_id",), "conversation", True),
    "actor_id": (("actor_id",), "actor", False),
    "subject_id": (("subject_id",), "subject", False),
}


def identity_index_name(table_name: str, field: str) -> str:
    """The name of the identity index serving filters on ``field``."""
    return f"ix_{table_name}_{field}"


def identity_index_names(table_name: str) -> tuple[str, ...]:
    """The names of every identity index of ``table_name``, in :data:`IDENTITY_INDEXES`
    order."""
    return tuple(identity_index_name(table_name, field) for field in IDENTITY_INDEXES)


def scope_predicate(scope: str) -> str:
    """The SQL condition on ``scope`` of a partial identity index, literally as the
    queries repeat it (a planner proves the index usable from the same text)."""
    return f"scope = '{scope}'"


#: The dialects whose partial-index conditions statekit declares.
DIALECTS = ("postgresql", "sqlite")


def identity_indexes(table_name: str, dialects: Sequence[str] = DIALECTS) -> list[Index]:
    """The :data:`IDENTITY_INDEXES` of the table ``table_name``, unbound, with their
    conditions for ``dialects`` (declaring one loads that dialect's module)."""
    indexes = []
    for field, (columns, scope, sparse) in IDENTITY_INDEXES.items():
        name = identity_index_name(table_name, field)
        terms = [scope_predicate(scope)] if scope is not None else []
        terms += [f"{field} IS NOT NULL"] if sparse else []
        if not terms:
            indexes.append(Index(name, *columns))
            continue
        where = text(" AND ".join(terms))
        conditions: dict[str, Any] = {f"{dialect}_where": where for dialect in dialects}
        indexes.append(Index(name, *columns, **conditions))
    return indexes


def state_table(
    metadata: MetaData,
    table_name: str = DEFAULT_TABLE_NAME,
    schema: str | None = None,
    *,
    shape: TableShape = STATEKIT_SHAPE,
    dialects: Sequence[str] = DIALECTS,
    indexes: bool = True,
) -> Table:
    """Declare statekit's table on ``metadata`` (a host's own, for its migrations).

    The unique constraint is named ``uq_<table>_scope_key_state_key``; the upsert
    targets its columns. The :data:`IDENTITY_INDEXES` are named ``ix_<table>_<field>``.
    ``shape`` declares a table found in place as it is (the backend does this itself);
    migrations want the default. ``dialects`` are those the partial indexes' conditions
    are declared for (the backend names its own); without ``indexes``, none is declared.
    """
    version = (
        [Column("version", BigInteger(), nullable=False, server_default=text("1"))]
        if shape.versions
        else []
    )
    return Table(
        table_name,
        metadata,
        Column("id", _id_type(), primary_key=True, autoincrement=True),
        *_context_columns(REQUIRED_CONTEXT_COLUMNS, nullable=False),
        Column("scope_key", String(MAX_SCOPE_KEY_LENGTH), nullable=False),
        Column("state_key", _key_type(shape.code_point_keys), nullable=False),
        Column("value_json", Text(), nullable=shape.nullable_values),
        *_context_columns(OPTIONAL_CONTEXT_FIELDS, nullable=True),
        Column("created_at", DateTime(timezone=shape.aware_timestamps), nullable=False),
        Column("updated_at", DateTime(timezone=shape.aware_timestamps), nullable=False),
        *version,
        UniqueConstraint("scope_key", "state_key", name=unique_name(table_name)),
        *(identity_indexes(table_name, dialects) if indexes else ()),
        schema=schema,
    )


#: What a scopes table's name ends with; no entries table's name may (see :mod:`.naming`).
SCOPES_SUFFIX = "_scopes"


def scopes_name(table_name: str) -> str:
    """The name of the scopes table beside the entries table ``table_name``."""
    return f"{table_name}{SCOPES_SUFFIX}"


def deadline_index_name(table_name: str) -> str:
    """The name of the index on the scopes table's ``expires_at`` (what the sweep scans)."""
    return f"ix_{scopes_name(table_name)}_expires_at"


def scopes_table(
    metadata: MetaData, table_name: str = DEFAULT_TABLE_NAME, schema: str | None = None
) -> Table:
    """Declare the scopes table beside ``table_name`` on ``metadata``: one row per scope
    that has (or had) a deadline, which every read of the entries checks.

    ``expires_at`` is the deadline in POSIX seconds (``NULL``: none), compared with the
    backend's own clock, never the server's: the entries table keeps its columns (the
    original store's table included), and a scope without a row never expires. The index
    on ``expires_at`` is what the sweep scans.
    """
    return Table(
        scopes_name(table_name),
        metadata,
        Column("scope_key", String(MAX_SCOPE_KEY_LENGTH), primary_key=True),
        Column("expires_at", Double(), nullable=True),
        Index(deadline_index_name(table_name), "expires_at"),
        schema=schema,
    )


_metadata: MetaData | None = None


def __getattr__(name: str) -> MetaData:
    """``metadata``: statekit's tables with the default names, for ``target_metadata`` in
    Alembic. Built on first use: the partial indexes' conditions, one per dialect, load
    both dialects' modules, which a SQLite command does without."""
    global _metadata
    if name != "metadata":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _metadata is None:
        _metadata = MetaData()
        state_table(_metadata)
        scopes_table(_metadata)
    return _metadata


_columns = state_table(MetaData(), indexes=False).columns
#: Column names ``describe`` checks for: every column of the table, in its order.
EXPECTED_COLUMNS = tuple(column.name for column in _columns)
#: The width of every text column with one: what the validation limits need.
COLUMN_WIDTHS = {
    column.name: column.type.length
    for column in _columns
    if isinstance(column.type, String) and column.type.length is not None
}
