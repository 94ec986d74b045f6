"""Which table and schema names the SQL backend accepts, checked before any I/O.

One rule on every SQL engine, so a name that works on SQLite works on PostgreSQL and a
store never reaches another's data through a name:

* lower-case identifiers ``[a-z_][a-z0-9_]*``: SQLite compares names without regard to
  case (``Victim`` is ``victim``), PostgreSQL folds unquoted names to lower case, so a
  name with capitals could reach another store's table;
* no names of system catalogs (``pg_*``, ``sqlite_*``, ``information_schema``): statekit
  would read, write and ``clear_all()`` them;
* every name derived from the table's (its constraints and indexes, its scopes table's)
  fits PostgreSQL's 63 characters: longer names fail when the table is created, not at
  construction;
* no table name ending in ``_scopes``: that is where the scopes table of another store's
  entries table lives (``x_scopes`` beside ``x``).
"""

from __future__ import annotations

import re

from sqlalchemy import Table

from statekit.backends.sql.schema import SCOPES_SUFFIX, deadline_index_name, scopes_name
from statekit.errors import ConfigurationError

#: PostgreSQL's longest identifier (NAMEDATALEN - 1); SQLite has no limit, but one rule
#: for every engine keeps a deployment movable.
MAX_IDENTIFIER_LENGTH = 63

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_RESERVED_PREFIXES = ("pg_", "sqlite_")
_RESERVED_NAMES = frozenset({"information_schema"})


def check_name(kind: str, name: object) -> str:
    """``name`` if it can name statekit's own table (``kind``: ``"table"``) or schema,
    else :class:`ConfigurationError` saying why."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"The {kind} name must be a non-empty string, not {name!r}")
    if _IDENTIFIER.fullmatch(name) is None:
        raise ConfigurationError(
            f"The {kind} name {name!r} is not a lower-case identifier [a-z_][a-z0-9_]*: "
            "SQL engines fold or ignore case, so it could name another store's table"
        )
    if name in _RESERVED_NAMES or name.startswith(_RESERVED_PREFIXES):
        raise ConfigurationError(
            f"The {kind} name {name!r} is reserved for the database's system catalogs "
            "(pg_*, sqlite_*, information_schema)"
        )
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise ConfigurationError(
            f"The {kind} name {name!r} has {len(name)} characters; "
            f"at most {MAX_IDENTIFIER_LENGTH} are allowed"
        )
    return name


def derived_names(table: Table) -> list[str]:
    """The names the table's creation gives: its constraints and indexes, named or
    implicit (PostgreSQL's ``<table>_pkey`` and ``<table>_id_seq``)."""
    names = [f"{table.name}_pkey", f"{table.name}_id_seq"]
    names += [str(c.name) for c in table.constraints if isinstance(c.name, str)]
    names += [str(i.name) for i in table.indexes if isinstance(i.name, str)]
    scopes = scopes_name(table.name)
    return [*names, scopes, f"{scopes}_pkey", deadline_index_name(table.name)]


def check_table(table: Table) -> None:
    """Refuse ``table`` (a :func:`~statekit.backends.sql.schema.state_table`) unless its
    name, its schema's and every derived name are acceptable."""
    if table.schema is not None:
        check_name("schema", table.schema)
    check_name("table", table.name)
    if table.name.endswith(SCOPES_SUFFIX):
        raise ConfigurationError(
            f"The table name {table.name!r} ends with {SCOPES_SUFFIX!r}, the names of "
            f"scopes tables (the one beside {table.name[: -len(SCOPES_SUFFIX)]!r}): "
            "choose another name"
        )
    longest = max(derived_names(table), key=len)
    if len(longest) > MAX_IDENTIFIER_LENGTH:
        allowed = MAX_IDENTIFIER_LENGTH - (len(longest) - len(table.name))
        raise ConfigurationError(
            f"The table name {table.name!r} is too long: the name {longest!r} derived from "
            f"it would have {len(longest)} characters, more than PostgreSQL's "
            f"{MAX_IDENTIFIER_LENGTH}; use at most {allowed} characters"
        )
