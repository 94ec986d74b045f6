"""What the backend finds in place: the server's version and the table's layout.

:func:`observe` compares the table with :func:`.schema.state_table` (every column, the
widths the validation limits need, the unique ``(scope_key, state_key)`` the upsert
targets, and on PostgreSQL the ``"C"`` collation that gives code-point order) and tells
the :class:`~.schema.TableShape` it has, so a host's table (the original store's) is
served as it is and reported exactly as wrong as it is, never changed. The scopes table
beside it (:func:`.schema.scopes_table`) is looked for too: without it the table is served
without expiry, as a table without ``version`` is served without versions, and without
the identity indexes (:data:`.schema.IDENTITY_INDEXES`, by name) without erasure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from statekit.backends.sql.faults import TRANSLATED, translate
from statekit.backends.sql.gateway import Gateway
from statekit.backends.sql.schema import (
    COLUMN_WIDTHS,
    EXPECTED_COLUMNS,
    STATEKIT_SHAPE,
    TableShape,
    identity_index_names,
    scopes_name,
)

#: Said where versions are unavailable because the table has no version column.
NO_VERSION_COLUMN = (
    "no version column: versions (Capability.VERSIONS) are unavailable until "
    "`statekit init` (SQLBackend.upgrade_schema) adds it"
)
#: The columns a scopes table must have for the backend to declare expiry.
SCOPES_COLUMNS = ("scope_key", "expires_at")


def no_scopes_table(name: str) -> str:
    """Said where expiry is unavailable because the scopes table ``name`` is missing."""
    return (
        f"no scopes table {name}: expiry (Capability.EXPIRY) is unavailable until "
        "`statekit init` (SQLBackend.upgrade_schema) creates it"
    )


def no_identity_indexes(names: tuple[str, ...]) -> str:
    """Said where erasure is unavailable because identity indexes are missing."""
    return (
        f"missing identity indexes {', '.join(names)}: erasure and access requests "
        "(Capability.ERASURE) are unavailable until `statekit init` "
        "(SQLBackend.upgrade_schema) adds them"
    )


@dataclass(frozen=True)
class Observed:
    """A table as found. ``problems`` make the layout not ok; ``blocking`` ones mean the
    backend cannot run its statements on it at all."""

    fullname: str
    exists: bool
    shape: TableShape = STATEKIT_SHAPE
    missing_columns: tuple[str, ...] = ()
    unique: bool = True
    #: Columns narrower than the limits statekit accepts: name -> width needed.
    narrow: dict[str, int] = field(default_factory=dict)
    #: The scopes table's full name, and whether it exists at all (``shape.expiry`` says
    #: whether it has the columns statekit needs).
    scopes_fullname: str = ""
    scopes_exist: bool = True
    #: The identity indexes (:data:`.schema.IDENTITY_INDEXES`) not found, by name.
    missing_indexes: tuple[str, ...] = ()

    @property
    def blocking(self) -> list[str]:
        if not self.exists:
            return [f"missing table {self.fullname}"]
        problems = []
        if self.missing_columns:
            problems.append("missing columns: " + ", ".join(self.missing_columns))
        if not self.unique:
            problems.append("missing unique (scope_key, state_key)")
        return problems

    @property
    def layout(self) -> str:
        """``"ok"`` or what is wrong."""
        problems = self.blocking + [
            f"{name} holds fewer than the {width} characters statekit accepts"
            for name, width in self.narrow.items()
        ]
        if self.exists and self.scopes_exist and not self.shape.expiry:
            problems.append(
                f"{self.scopes_fullname} lacks the columns " + ", ".join(SCOPES_COLUMNS)
            )
        return "; ".join(problems) if problems else "ok"

    @property
    def warnings(self) -> tuple[str, ...]:
        """What works, with less: no versions, listings sorted without the index."""
        found: list[str] = []
        if self.exists and not self.shape.versions:
            found.append(NO_VERSION_COLUMN)
        if self.exists and not self.scopes_exist:
            found.append(no_scopes_table(self.scopes_fullname))
        if self.exists and self.missing_indexes:
            found.append(no_identity_indexes(self.missing_indexes))
        if self.exists and not self.shape.code_point_keys:
            found.append(
                'state_key collation is not "C": listings sort in code-point order without '
                "the index's help (`statekit init` sets it)"
            )
        return tuple(found)


async def observe_table(engine: AsyncEngine, gateway: Gateway, table: Table) -> Observed:
    """The table named like ``table``, as found, in a place of ``gateway``."""
    try:
        async with gateway.guard(), engine.connect() as conn:
            return await conn.run_sync(observe, table)
    except TRANSLATED as exc:
        raise translate(exc, "inspect the table", address=gateway.address) from exc


async def server_and_layout(conn: AsyncConnection, table: Table) -> tuple[str, Observed]:
    """``(server version, the table as found)``."""
    dialect = conn.dialect.name
    version_query = (
        "SELECT current_setting('server_version')"
        if dialect == "postgresql"
        else "SELECT sqlite_version()"
    )
    server_version = str((await conn.execute(text(version_query))).scalar_one())
    return server_version, await conn.run_sync(observe, table)


def observe(conn: Connection, table: Table) -> Observed:
    """The table named like ``table``, as found on ``conn`` (read-only)."""
    name, schema = table.name, table.schema
    inspector = inspect(conn)
    scopes = scopes_name(name)
    scopes_fullname = scopes if schema is None else f"{schema}.{scopes}"
    if not inspector.has_table(name, schema=schema):
        return Observed(table.fullname, exists=False, scopes_fullname=scopes_fullname)
    scopes_exist = inspector.has_table(scopes, schema=schema)
    scopes_columns = (
        {column["name"] for column in inspector.get_columns(scopes, schema)}
        if scopes_exist
        else set()
    )
    columns = {column["name"]: column for column in inspector.get_columns(name, schema)}
    missing = tuple(c for c in EXPECTED_COLUMNS if c not in columns and c != "version")
    uniques: list[list[str | None]] = [
        list(u["column_names"]) for u in inspector.get_unique_constraints(name, schema)
    ]
    indexes = inspector.get_indexes(name, schema)
    uniques += [list(i["column_names"]) for i in indexes if i["unique"]]
    postgres = conn.dialect.name == "postgresql"
    present = {i["name"] for i in indexes}
    missing_indexes = tuple(i for i in identity_index_names(name) if i not in present)
    shape = _shape(columns, postgres=postgres, expiry=scopes_columns >= set(SCOPES_COLUMNS))
    return Observed(
        table.fullname,
        exists=True,
        shape=replace(shape, erasure=not missing_indexes),
        missing_indexes=missing_indexes,
        missing_columns=missing,
        unique=["scope_key", "state_key"] in uniques,
        narrow=_narrow(columns) if postgres else {},
        scopes_fullname=scopes_fullname,
        scopes_exist=scopes_exist,
    )


def _shape(columns: dict[str, Any], *, postgres: bool, expiry: bool) -> TableShape:
    value_json = columns.get("value_json")
    created_at = columns.get("created_at")
    state_key = columns.get("state_key")
    return TableShape(
        versions="version" in columns,
        aware_timestamps=created_at is None or getattr(created_at["type"], "timezone", True),
        nullable_values=bool(value_json and value_json["nullable"]),
        # SQLite's default BINARY collation compares UTF-8 bytes: code-point order.
        code_point_keys=not postgres
        or state_key is None
        or getattr(state_key["type"], "collation", None) == "C",
        expiry=expiry,
    )


def _narrow(columns: dict[str, Any]) -> dict[str, int]:
    """PostgreSQL columns whose ``VARCHAR(n)`` is below statekit's (SQLite ignores widths)."""
    narrow: dict[str, int] = {}
    for name, width in COLUMN_WIDTHS.items():
        found = columns.get(name)
        length = getattr(found["type"], "length", None) if found else None
        if length is not None and length < width:
            narrow[name] = width
    return narrow
