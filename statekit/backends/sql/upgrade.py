"""Bringing a table found in place up to statekit's layout: what ``statekit init`` runs.

Only additions and widenings that keep every row as it is: the ``version`` column
(existing rows start at version 1), the unique ``(scope_key, state_key)`` the upsert
targets (it fails, changing nothing, if the table holds duplicate rows: remove them
first), ``VARCHAR`` columns widened to the limits statekit accepts and, on PostgreSQL,
``state_key`` given ``COLLATE "C"``. Naive timestamps and a nullable ``value_json`` are
served as they are and left alone; so are missing context columns, which only the host
can fill.
"""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.engine import Dialect

from statekit.backends.sql.layout import Observed
from statekit.backends.sql.schema import COLUMN_WIDTHS, unique_name


def upgrade_steps(observed: Observed, table: Table, dialect: Dialect) -> list[tuple[str, str]]:
    """``(what it does, DDL)`` for each change ``observed`` needs, in order."""
    if not observed.exists:
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
    if dialect.name != "postgresql":
        return steps  # SQLite neither enforces widths nor needs a collation
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
