"""What the parts of :class:`~statekit.backends.sql.SQLBackend` (its reads in
:mod:`.reads`, its writes in :mod:`.writes`) share: the backend's state and plumbing,
declared here for the type checker and defined by the backend itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from statekit.backends.sql.driver import Program
from statekit.backends.sql.expiry import Expiry
from statekit.backends.sql.gateway import DriverRun
from statekit.backends.sql.statements import DriverStatement, Statements


class Parts:
    """The backend's state and plumbing, as its parts use them."""

    _ready: bool
    _dialect: str
    _statements: Statements
    _expiry: Expiry | None
    _shared_connection: bool
    #: The time deadlines are set and checked by (POSIX seconds); tests replace it.
    clock: Callable[[], float]
    #: The share of a ttl (at most 1 s) by which a write may leave a deadline short of
    #: its target rather than update the scopes row; 0: deadlines are exact.
    deadline_tolerance: float = 0.0

    if TYPE_CHECKING:

        async def _prepare(self) -> None: ...

        def _check_open(self) -> None: ...

        def _require_versions(self) -> None: ...

        def _require_expiry(self) -> Expiry: ...

        async def _run(
            self,
            run: DriverRun,
            sql: str,
            arguments: Any,
            what: str,
            *,
            read: bool = False,
            atomic: bool = True,
            coalesce: bool = False,
        ) -> Any: ...

        async def _upsert(self, sql: str, arguments: Sequence[Any]) -> Any: ...

        async def _rows(
            self,
            statement: DriverStatement,
            params: Mapping[str, Any],
            what: str,
            *,
            read: bool = False,
            coalesce: bool = False,
        ) -> Sequence[Any]: ...

        async def _program(self, program: Program, what: str, *, transaction: bool) -> Any: ...
