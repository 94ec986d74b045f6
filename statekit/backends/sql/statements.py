"""The backend's statements: SQLAlchemy Core, compiled once per backend to driver SQL.

SQLAlchemy writes every statement (quoting, schema, each dialect's upsert syntax); the
single-statement operations then run that SQL text on the driver's own connection, so
the hot path pays neither SQLAlchemy's per-execution work nor, on SQLite, one worker
thread round trip per cursor call. Parameters are named here and passed by position.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    BigInteger,
    Double,
    Integer,
    MetaData,
    Table,
    bindparam,
    delete,
    exists,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from statekit.backends.base import ScopeContext
from statekit.backends.sql.schema import (
    CONTEXT_COLUMNS,
    STATEKIT_SHAPE,
    TableShape,
    scopes_table,
)

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

#: Rows fetched per round trip by :meth:`SQLBackend.iter_entries`.
EXPORT_BATCH_SIZE = 500
#: Snapshot statements for up to this many scope keys are compiled once and kept.
_KEPT_SNAPSHOT_SIZES = 16

#: The columns an inserted row is given (id and version take their defaults).
ROW_COLUMNS = (
    "scope_key",
    "state_key",
    "value_json",
    *CONTEXT_COLUMNS,
    "created_at",
    "updated_at",
)
_context_values = attrgetter(*CONTEXT_COLUMNS)
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


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """SQL text in the driver's paramstyle and the names of its parameters, in order.

    ``defaults`` holds the values SQLAlchemy fixed itself (SQLite's ``OFFSET 0`` after a
    bound ``LIMIT``); every other parameter must be given.
    """

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        if not self.defaults:
            return [params[name] for name in self.names]
        return [params[name] if name in params else self.defaults[name] for name in self.names]


def _compile(
    statement: ClauseElement, dialect: Dialect, keys: Sequence[str] = ()
) -> DriverStatement:
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys)))
    names = tuple(compiled.positiontup or ())
    defaults = {
        name: compiled.binds[name].effective_value
        for name in names
        if name not in keys and not compiled.binds[name].required
    }
    return DriverStatement(str(compiled), names, defaults)


class Statements:
    """Every statement of one backend: driver SQL for the operations that run on the
    driver's connection, Core selects for the export (which runs through SQLAlchemy for
    its type processing and server-side cursor).

    ``shape`` says how the table differs from statekit's own: without ``versions`` the
    versioned statements are absent and writes return version 0; with
    ``nullable_values`` every read skips rows whose ``value_json`` is ``NULL``. With
    ``expiry`` every read (and the delete, and the conditional update) skips the rows of
    an expired scope: each takes a parameter ``now`` (POSIX seconds, the backend's
    clock) and checks the scope's row in the scopes table by its primary key.
    """

    get_versioned: DriverStatement
    version: DriverStatement
    insert_new: DriverStatement
    update_if: DriverStatement

    def __init__(self, table: Table, dialect: Dialect, shape: TableShape = STATEKIT_SHAPE) -> None:
        self._table = table
        self._dialect = dialect
        self._shape = shape
        c = table.c
        # A NULL value_json (the original store's table allows it) reads as absent.
        present = (c.value_json.is_not(None),) if shape.nullable_values else ()
        self.scopes = scopes_table(MetaData(), table.name, table.schema)
        s = self.scopes.c
        now: BindParameter[float] = bindparam("now", type_=Double())
        self._now = now
        self._present = present
        key = (c.scope_key == bindparam("scope_key"), c.state_key == bindparam("state_key"))
        found = (*key, *present, *self._live(bindparam("scope_key")))
        self._writes(table, dialect)
        self.get = _compile(select(c.value_json).where(*found), dialect)
        if shape.versions:
            self.get_versioned = _compile(select(c.value_json, c.version).where(*found), dialect)
            self.version = _compile(select(c.version).where(*found), dialect)
        # A NULL row is absent: not deleted either. (Not "RETURNING value_json IS NOT
        # NULL": SQLite 3.40 returns 1 for a NULL there.)
        self.delete = _compile(delete(table).where(*found).returning(c.id), dialect)
        self.clear = _compile(delete(table), dialect)
        self.lists = {
            shape_: _compile(
                _listing(
                    table,
                    *shape_,
                    (*present, *self._live(bindparam("scope_key"))),
                    shape.code_point_keys,
                ),
                dialect,
            )
            for shape_ in _LIST_SHAPES
        }
        self._snapshots: dict[int, DriverStatement] = {}
        self._timestamp = _timestamp_processor(c.created_at.type.dialect_impl(dialect), dialect)
        version = c.version if shape.versions else literal_column("0", BigInteger)
        columns = (
            c.scope_key,
            c.state_key,
            c.value_json,
            *(c[name] for name in CONTEXT_COLUMNS),
            c.created_at,
            c.updated_at,
            version,
        )
        if shape.expiry:
            # Each entry with its scope's deadline; an expired scope's entries are left out.
            joined = table.outerjoin(self.scopes, s.scope_key == c.scope_key)
            self.export = (
                select(*columns, s.expires_at)
                .select_from(joined)
                .where(*present, or_(s.expires_at.is_(None), s.expires_at > now))
            )
        else:
            self.export = select(*columns, null().label("expires_at")).where(*present)
        self.export_page = (
            self.export.add_columns(c.id)
            .where(c.id > bindparam("last_id"))
            .order_by(c.id)
            .limit(EXPORT_BATCH_SIZE)
        )

    def _live(self, scope_key: Any, keys: Sequence[Any] = ()) -> tuple[ColumnElement[bool], ...]:
        """With expiry, the condition that ``scope_key``'s scope has not expired (a scope
        without a row in the scopes table never does); ``keys``: among which it is, so the
        check reads those keys' rows only, whatever the table holds."""
        if not self._shape.expiry:
            return ()
        s = self.scopes.c
        among = (s.scope_key.in_(keys),) if keys else ()
        return (~exists().where(s.scope_key == scope_key, *among, s.expires_at <= self._now),)

    def _writes(self, table: Table, dialect: Dialect) -> None:
        """The upserts, and with versions the insert of a new key and the conditional
        update."""
        c = table.c
        # Each dialect's module is imported for its own URLs only: PostgreSQL's takes
        # tens of milliseconds, a good part of a short command's start on SQLite.
        dialects = importlib.import_module(f"sqlalchemy.dialects.{dialect.name}")
        insert = cast("postgresql.Insert | sqlite.Insert", dialects.insert(table))
        conflict = [c.scope_key, c.state_key]
        # created_at and the context stay as created.
        updated = {
            "value_json": insert.excluded.value_json,
            "updated_at": insert.excluded.updated_at,
        }
        if not self._shape.versions:
            upsert = insert.on_conflict_do_update(index_elements=conflict, set_=updated)
            self.upsert = _compile(
                upsert.returning(literal_column("0", BigInteger)), dialect, ROW_COLUMNS
            )
            self.upsert_many = _compile(upsert, dialect, ROW_COLUMNS)
            self._row_statements(self.upsert, self.upsert_many)
            return
        # A literal increment, so the statements have no parameter beyond the row's.
        bumped = c.version + literal_column("1", BigInteger)
        upsert = insert.on_conflict_do_update(
            index_elements=conflict, set_={**updated, "version": bumped}
        )
        self.upsert = _compile(upsert.returning(c.version), dialect, ROW_COLUMNS)
        self.upsert_many = _compile(upsert, dialect, ROW_COLUMNS)
        new_only = (
            # A row whose value is NULL is absent: a first write takes its place.
            insert.on_conflict_do_update(
                index_elements=conflict,
                set_={**updated, "version": bumped},
                where=c.value_json.is_(None),
            )
            if self._shape.nullable_values
            else insert.on_conflict_do_nothing(index_elements=conflict)
        )
        self.insert_new = _compile(new_only.returning(c.version), dialect, ROW_COLUMNS)
        self._row_statements(self.upsert, self.upsert_many, self.insert_new)
        self.update_if = _compile(
            update(table)
            .where(
                c.scope_key == bindparam("key_scope"),
                c.state_key == bindparam("key_state"),
                c.version == bindparam("expected"),
                *self._present,
                *self._live(bindparam("key_scope")),
            )
            .values(value_json=bindparam("new_value"), updated_at=bindparam("ts"), version=bumped)
            .returning(c.version),
            dialect,
        )

    def _row_statements(self, *statements: DriverStatement) -> None:
        # The row statements take the same parameters (all given), in one order.
        first = statements[0]
        if any(s.names != first.names or s.defaults for s in statements):
            raise AssertionError("the row statements differ in their parameters")
        self._row_order = itemgetter(*(ROW_COLUMNS.index(name) for name in first.names))

    def snapshot(self, size: int) -> DriverStatement:
        """``SELECT ... WHERE scope_key IN (...)`` for ``size`` scope keys ``scope_key_<i>``."""
        kept = self._snapshots.get(size)
        if kept is not None:
            return kept
        c = self._table.c
        keys = [bindparam(f"scope_key_{i}", type_=c.scope_key.type) for i in range(size)]
        statement = _compile(
            select(c.scope_key, c.state_key, c.value_json).where(
                c.scope_key.in_(keys), *self._present, *self._live(c.scope_key, keys)
            ),
            self._dialect,
        )
        if size <= _KEPT_SNAPSHOT_SIZES:
            self._snapshots[size] = statement
        return statement

    def row(
        self, scope_key: str, state_key: str, value_json: str, context: ScopeContext, now: Any
    ) -> tuple[Any, ...]:
        """The arguments of :attr:`upsert`, :attr:`upsert_many` and :attr:`insert_new` for
        one row (built by position: a dict per row cost a noticeable part of a set)."""
        values = (scope_key, state_key, value_json, *_context_values(context), now, now)
        row: tuple[Any, ...] = self._row_order(values)
        return row

    def timestamp(self, moment: datetime) -> Any:
        """``moment`` (aware) as the driver takes it: an aware UTC time for a column with
        a time zone, else the naive UTC time, which the server stores as it is whatever
        its session's time zone (SQLite stores SQLAlchemy's naive UTC text)."""
        if not self._shape.aware_timestamps:
            if moment.tzinfo is not timezone.utc:
                moment = moment.astimezone(timezone.utc)
            moment = moment.replace(tzinfo=None)
        return moment if self._timestamp is None else self._timestamp(moment)


#: SQLAlchemy's storage format of SQLite's ``DATETIME``, which a naive time's ISO text
#: (space-separated, with microseconds) spells the same.
_SQLITE_DATETIME = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def _timestamp_processor(impl: Any, dialect: Dialect) -> Callable[[datetime], Any] | None:
    """How a timestamp goes to the driver: SQLAlchemy's bind processor for the column's
    type, or for SQLite's default storage format, the same text from ``isoformat``
    (about a microsecond less per write)."""
    processor: Callable[[datetime], Any] | None = impl.bind_processor(dialect)
    if processor is None or getattr(impl, "_storage_format", None) != _SQLITE_DATETIME:
        return processor
    slow = processor

    def iso(moment: datetime) -> Any:
        if moment.tzinfo is None and type(moment) is datetime:
            return moment.isoformat(" ", "microseconds")
        return slow(moment)

    return iso


#: Listing shapes: the lower bound on ``state_key`` (none, ``>=`` a prefix, ``>`` a
#: cursor) and whether an upper bound (the prefix's successor) applies.
_LIST_SHAPES = [(low, bounded) for low in (None, ">=", ">") for bounded in (False, True)]


def _listing(
    table: Table,
    low: str | None,
    bounded: bool,
    present: tuple[ColumnElement[bool], ...],
    code_point_order: bool,
) -> ClauseElement:
    c = table.c
    # Without a "C" column collation, ask for code-point order (PostgreSQL only).
    key: ColumnElement[str] = c.state_key if code_point_order else c.state_key.collate("C")
    query = select(c.state_key).where(c.scope_key == bindparam("scope_key"), *present)
    if low == ">=":
        query = query.where(key >= bindparam("low"))
    elif low == ">":
        query = query.where(key > bindparam("low"))
    if bounded:
        query = query.where(key < bindparam("high"))
    return query.order_by(key).limit(bindparam("limit", type_=Integer))
