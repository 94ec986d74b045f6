"""What ``SQLBackend.describe`` checks: the server's version and the table's layout.

The layout is checked against :func:`.schema.state_table` (every column, the unique
``(scope_key, state_key)`` the upsert targets, and on PostgreSQL the ``"C"`` collation
that gives code-point order), so a host's migrated table is reported exactly as wrong as
it is, never changed.
"""

from __future__ import annotations

from sqlalchemy import Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from statekit.backends.sql.schema import EXPECTED_COLUMNS


async def server_and_layout(conn: AsyncConnection, table: Table) -> tuple[str, str]:
    """``(server version, layout)``: the layout is ``"ok"`` or what is wrong with it."""
    dialect = conn.dialect.name
    version_query = (
        "SELECT current_setting('server_version')"
        if dialect == "postgresql"
        else "SELECT sqlite_version()"
    )
    server_version = str((await conn.execute(text(version_query))).scalar_one())
    layout = await conn.run_sync(_layout, table)
    return server_version, layout


def _layout(conn: Connection, table: Table) -> str:
    name, schema = table.name, table.schema
    inspector = inspect(conn)
    if not inspector.has_table(name, schema=schema):
        return f"missing table {table.fullname}"
    problems: list[str] = []
    columns = {column["name"]: column for column in inspector.get_columns(name, schema)}
    missing = [column for column in EXPECTED_COLUMNS if column not in columns]
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    wanted: list[str | None] = ["scope_key", "state_key"]
    uniques: list[list[str | None]] = [
        list(u["column_names"]) for u in inspector.get_unique_constraints(name, schema)
    ]
    indexes = inspector.get_indexes(name, schema)
    uniques += [list(i["column_names"]) for i in indexes if i["unique"]]
    if wanted not in uniques:
        problems.append("missing unique (scope_key, state_key)")
    if conn.dialect.name == "postgresql" and "state_key" in columns:
        collation = getattr(columns["state_key"]["type"], "collation", None)
        if collation != "C":
            problems.append(f'state_key collation is {collation!r}, not "C"')
    return "; ".join(problems) if problems else "ok"
