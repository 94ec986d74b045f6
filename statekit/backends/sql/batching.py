"""One statement run for many callers at once: what :mod:`.coalesce` sends.

A batch is one SQL text and the arguments of each caller, and its result is each
caller's rows, in the callers' order, exactly what each would have got alone.

PostgreSQL runs a batch in one round trip. Every parameter of statekit's statements
carries its type (``$3::VARCHAR``), so a statement can be rewritten over arrays, one
element per caller:

- a read becomes ``SELECT b.i, r.* FROM unnest($1::FLOAT[], ...) WITH ORDINALITY AS
  b(p1, ..., i) CROSS JOIN LATERAL (<the read over b.p1, ...>) AS r``: the read once per
  caller, its rows tagged with the caller's place;
- an upsert (``INSERT ... VALUES (...)`` or ``INSERT ... SELECT ... WHERE ...``, then
  ``ON CONFLICT ... RETURNING``) becomes one multi-row ``INSERT ... SELECT ... FROM
  unnest(...)``, whose returned rows are matched to callers by their row's key.
  ``ON CONFLICT`` cannot touch one row twice in a statement, so the writes are sent in
  rounds of distinct keys (the n-th write of each key in round n), in one transaction:
  several writes of one key apply in call order. Within a round the rows go in key
  order, as every other batch locks them, so two batches do not deadlock over rows.

A text parameter (``VARCHAR``, ``TEXT``) does not go as an array but as one string, the
callers' values joined by a control character and split by the server
(``string_to_array``): asyncpg's encoding of an array costs more per element than
anything else in a batch (see :meth:`Plan.arguments`).

SQLite runs the callers' statements one after another on one connection, in one
hand-off to the connection's thread; writes inside one ``BEGIN IMMEDIATE`` transaction,
so a batch of writes costs one commit (one fsync), not one per caller.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.util import await_only

from statekit.backends.sql import driver

# ``$n::TYPE``: the parameter's number and type (the types SQLAlchemy and statekit write).
_PARAMETER = re.compile(
    r"\$(\d+)::(TIMESTAMP WITH(?:OUT)? TIME ZONE|DOUBLE PRECISION|[A-Za-z_][A-Za-z0-9_]*)"
)
_BARE = re.compile(r"\$\d+(?!\d|::)")
_INSERT = re.compile(
    r"^INSERT INTO (?P<table>\S+) \((?P<columns>[^)]*)\) "
    r"(?:VALUES \((?P<values>[^)]*)\)|SELECT (?P<select>.*?) WHERE (?P<where>.*?)) "
    r"(?P<conflict>ON CONFLICT .* RETURNING .*)$",
    re.DOTALL,
)


#: What separates the callers' values of a text parameter sent joined, and what stands
#: for ``NULL`` there (see :meth:`Plan.arguments`).
SEPARATOR, NULL = "\x1f", "\x1e"
_TEXT_TYPES = frozenset({"varchar", "text"})


@dataclass(frozen=True)
class Plan:
    """How a batch of one statement runs on PostgreSQL (see the module's docstring)."""

    #: The statement over one array a parameter.
    sql: str
    #: Parameters of the original statement: how many, each one's type.
    types: tuple[str, ...]
    #: For an upsert, the numbers (0-based) of its scope-key and state-key parameters.
    key: tuple[int, int] | None = None
    #: The statement with its text parameters joined (``None``: it has none).
    joined: str | None = None

    def arrays(self, calls: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The statement's arguments: one array a parameter, each caller's value."""
        return list(zip(*calls, strict=True))[: len(self.types)]

    def arguments(self, calls: Sequence[Sequence[Any]]) -> tuple[str, Sequence[Any]]:
        """The statement to send for ``calls`` and its arguments.

        asyncpg checks every element of an array it encodes against three abstract
        classes, which costs more than anything else in a batch: a text parameter is
        sent as one string instead, the callers' values joined by :data:`SEPARATOR`
        (``NULL`` for ``None``), and split again by the server. A batch whose values
        hold either character (or are not strings) is sent over arrays instead."""
        columns = self.arrays(calls)
        if self.joined is not None:
            joined = _joined(self.types, columns)
            if joined is not None:
                return self.joined, joined
        return self.sql, columns


def _joined(types: Sequence[str], columns: Sequence[tuple[Any, ...]]) -> list[Any] | None:
    """``columns`` with each text one joined (see :meth:`Plan.arguments`), or ``None``
    if one cannot be."""
    out: list[Any] = []
    for kind, column in zip(types, columns, strict=True):
        if kind.lower() not in _TEXT_TYPES:
            out.append(column)
            continue
        nulls = 0
        try:
            text = SEPARATOR.join(column)
        except TypeError:  # a None (or a value that is not a string)
            nulls = column.count(None)
            if nulls == len(column):
                out.append(None)  # a NULL array: unnest pads it with NULLs
                continue
            try:
                text = SEPARATOR.join([NULL if value is None else value for value in column])
            except TypeError:
                return None
        if (
            text.count(SEPARATOR) != len(column) - 1
            or text.count(NULL) != nulls
            or not text  # one empty string, which the server would split into none
        ):
            return None
        out.append(text)
    if all(argument is None for argument in out):
        return None  # no array to count the callers by
    return out


def plan(sql: str) -> Plan | None:
    """The PostgreSQL plan for ``sql``, or ``None`` if it cannot be rewritten (every
    parameter typed; a plain read or a single-row upsert)."""
    types = _types(sql)
    if types is None:
        return None
    if sql.startswith("SELECT "):
        return _read_plan(sql, types)
    if sql.startswith("INSERT INTO "):
        return _upsert_plan(sql, types)
    return None


def _types(sql: str) -> tuple[str, ...] | None:
    if _BARE.search(sql):
        return None
    found: dict[int, str] = {}
    for match in _PARAMETER.finditer(sql):
        found.setdefault(int(match.group(1)), match.group(2))
    if not found or sorted(found) != list(range(1, len(found) + 1)):
        return None
    return tuple(found[n] for n in range(1, len(found) + 1))


def _over_arrays(sql: str) -> str:
    """``sql`` with each ``$n::T`` reading ``b.pn::T``."""
    return _PARAMETER.sub(lambda m: f"b.p{m.group(1)}::{m.group(2)}", sql)


def _unnest(types: Sequence[str], joined: bool = False) -> str:
    """The callers' arguments as rows ``b(p1, ..., i)``, ``i`` each caller's place (from
    1); ``joined``: text parameters as one string (see :meth:`Plan.arguments`)."""
    arrays = ", ".join(
        f"string_to_array(${n + 1}::text, chr(31), chr(30))"
        if joined and kind.lower() in _TEXT_TYPES
        else f"${n + 1}::{kind}[]"
        for n, kind in enumerate(types)
    )
    names = ", ".join(f"p{n + 1}" for n in range(len(types)))
    return f"unnest({arrays}) WITH ORDINALITY AS b({names}, i)"


def _joinable(types: Sequence[str]) -> bool:
    return any(kind.lower() in _TEXT_TYPES for kind in types)


def _read_plan(sql: str, types: tuple[str, ...]) -> Plan:
    def batched(joined: bool) -> str:
        return (
            f"SELECT b.i, r.* FROM {_unnest(types, joined)} "
            f"CROSS JOIN LATERAL ({_over_arrays(sql)}) AS r"
        )

    return Plan(batched(False), types, joined=batched(True) if _joinable(types) else None)


def _upsert_plan(sql: str, types: tuple[str, ...]) -> Plan | None:
    match = _INSERT.match(sql)
    if match is None:
        return None
    columns = [name.strip() for name in match["columns"].split(",")]
    listed = match["values"] if match["values"] is not None else match["select"]
    numbers = [int(n) - 1 for n in re.findall(r"\$(\d+)::", listed)]
    if len(numbers) != len(columns) or "scope_key" not in columns or "state_key" not in columns:
        return None
    key = (numbers[columns.index("scope_key")], numbers[columns.index("state_key")])
    where = "true" if match["where"] is None else _over_arrays(match["where"])

    def batched(joined: bool) -> str:
        return (
            f"INSERT INTO {match['table']} ({match['columns']}) "
            f"SELECT {_over_arrays(listed)} FROM {_unnest(types, joined)} WHERE {where} "
            f"{match['conflict']}, scope_key, state_key"
        )

    return Plan(batched(False), types, key, batched(True) if _joinable(types) else None)


def rounds(key: tuple[int, int], calls: Sequence[Sequence[Any]]) -> list[list[int]]:
    """The callers' indexes in rounds of distinct keys: the n-th write of a key in round
    n, each round in key order."""
    keys = [(arguments[key[0]], arguments[key[1]]) for arguments in calls]
    if len(set(keys)) == len(keys):  # each key once: one round
        return [sorted(range(len(keys)), key=keys.__getitem__)]
    seen: dict[tuple[Any, Any], int] = {}
    out: list[list[int]] = []
    for index, row_key in enumerate(keys):
        n = seen.get(row_key, 0)
        seen[row_key] = n + 1
        if n == len(out):
            out.append([])
        out[n].append(index)
    for group in out:
        group.sort(key=keys.__getitem__)
    return out


def run_postgres(
    connections: driver.Connections, sql: str, batch: tuple[Plan, Sequence[Sequence[Any]]]
) -> list[list[Any]]:
    """Run ``batch`` (its plan and each caller's arguments) in one statement, or in one
    transaction of one statement a round; each caller's rows."""
    batched, calls = batch
    results: list[list[Any]] = [[] for _ in calls]
    with driver.checked_out(connections) as connection:
        if batched.key is None:
            statement, arguments = batched.arguments(calls)
            for row in await_only(connection.fetch(statement, *arguments)):
                results[row[0] - 1].append(row[1:])
            return results
        groups = rounds(batched.key, calls)
        if len(groups) == 1:
            _upsert_round(connection, batched, calls, groups[0], results)
            return results
        transaction = connection.transaction()
        await_only(transaction.start())
        try:
            for group in groups:
                _upsert_round(connection, batched, calls, group, results)
        except Exception:
            await_only(transaction.rollback())
            raise
        await_only(transaction.commit())
    return results


def _upsert_round(
    connection: Any,
    batched: Plan,
    calls: Sequence[Sequence[Any]],
    group: Sequence[int],
    results: list[list[Any]],
) -> None:
    assert batched.key is not None
    scope, state = batched.key
    index = {(calls[i][scope], calls[i][state]): i for i in group}
    statement, arguments = batched.arguments([calls[i] for i in group])
    for row in await_only(connection.fetch(statement, *arguments)):
        results[index[(row[-2], row[-1])]].append(row[:-2])


def run_sqlite(
    connections: driver.Connections, sql: str, batch: tuple[bool, Sequence[Sequence[Any]]]
) -> list[list[Any]]:
    """Run ``sql`` once per caller in order on one connection (``batch``: whether it
    writes, each caller's arguments); writes in one transaction, all or nothing.

    The whole batch is one hand-off to aiosqlite's thread, where its statements run on
    the ``sqlite3`` connection itself: one hand-off per statement would cost the event
    loop a wake-up each. It uses aiosqlite's ``Connection._execute`` (run a function on
    the connection's thread), the one private aiosqlite API statekit calls;
    ``tests/test_sql_coalesce.py`` pins it to the versions ``pyproject.toml`` allows.
    """
    writes, calls = batch
    with driver.checked_out(connections) as connection:
        results: list[list[Any]] = await_only(
            connection._execute(_statements, connection, sql, writes, calls)
        )
        return results


def _statements(
    connection: Any, sql: str, writes: bool, calls: Sequence[Sequence[Any]]
) -> list[list[Any]]:
    """On aiosqlite's thread: the batch's statements on the ``sqlite3`` connection."""
    raw: sqlite3.Connection = connection._conn
    if writes and not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")
    try:
        results = [raw.execute(sql, arguments).fetchall() for arguments in calls]
    except BaseException:
        if raw.in_transaction:
            raw.rollback()
        raise
    if raw.in_transaction:
        raw.commit()
    return results
