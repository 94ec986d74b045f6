"""Options of the SQL backend: from keyword arguments and URL query parameters.

Keyword arguments win over the URL. Query parameters that are not statekit options stay
in the URL and reach the driver (for example asyncpg's ``ssl``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from statekit.backends.sql.schema import DEFAULT_TABLE_NAME
from statekit.errors import ConfigurationError

#: URL schemes (``dialect+driver``) the backend accepts, and what bare dialects mean.
DRIVERS = {
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "sqlite": "sqlite+aiosqlite",
}


#: ``(pool_size, max_overflow)`` of SQLite files when not given (PostgreSQL: the field
#: defaults). PostgreSQL's connections are server processes; SQLite's are threads of this
#: process, and beyond a few they add nothing but contention for the GIL (one writer at a
#: time, rows built under the GIL).
SQLITE_POOL = (4, 0)


class SQLOptions(BaseModel):
    """Validated options; see the README's "SQL backend" section for each one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table_name: str = Field(DEFAULT_TABLE_NAME, min_length=1, max_length=63)
    schema_: str | None = Field(None, alias="schema", min_length=1, max_length=63)
    create_schema: bool = True
    pool_size: int = Field(10, ge=1)
    max_overflow: int = Field(10, ge=0)
    pool_pre_ping: bool = False
    timeout: float = Field(5.0, gt=0)
    connect_timeout: float = Field(5.0, gt=0)
    busy_timeout: float = Field(5.0, ge=0)
    application_name: str = Field("statekit", max_length=63)
    coalesce: bool = True
    #: None: on for an SQLite file the backend opens itself, off otherwise.
    reads_on_loop: bool | None = None

    def pool(self, backend_name: str) -> tuple[int, int]:
        """``pool_size`` and ``max_overflow`` for this engine: SQLite's defaults for those
        not given on a SQLite URL."""
        if backend_name != "sqlite":
            return self.pool_size, self.max_overflow
        size, overflow = SQLITE_POOL
        given = self.model_fields_set
        return (
            self.pool_size if "pool_size" in given else size,
            self.max_overflow if "max_overflow" in given else overflow,
        )


def parse_url(url: str | URL) -> URL:
    """The SQLAlchemy URL for ``url`` with an async driver, or :class:`ConfigurationError`."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"Not a SQL URL: {exc}") from None
    except ValueError:
        # The port is not a number. Its text is not shown: with an unencoded '/', '@'
        # or ':' in the password, what SQLAlchemy took for the port is the password.
        raise ConfigurationError(
            "Invalid SQL URL: its port is not a number (percent-encode any ':', '/', '@' "
            "or '?' in the user name or password)"
        ) from None
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigurationError(
            f"Unsupported SQL URL scheme {parsed.drivername!r}: "
            "use postgresql+asyncpg:// or sqlite+aiosqlite:///path"
        )
    return parsed.set(drivername=driver)


def split_options(url: URL, options: dict[str, Any]) -> tuple[URL, SQLOptions]:
    """Take statekit's options out of ``url``'s query, merge ``options`` over them."""
    names = {field.alias or name for name, field in SQLOptions.model_fields.items()}
    from_query = {k: v for k, v in url.query.items() if k in names}
    merged = {**from_query, **options}
    try:
        parsed = SQLOptions.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"Invalid SQL backend option(s): {problems}") from None
    if parsed.schema_ is not None and url.get_backend_name() == "sqlite":
        raise ConfigurationError("The 'schema' option is for PostgreSQL only")
    if parsed.reads_on_loop and url.get_backend_name() != "sqlite":
        raise ConfigurationError("The 'reads_on_loop' option is for SQLite only")
    return url.difference_update_query(from_query), parsed
