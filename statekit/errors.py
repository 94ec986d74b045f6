"""The one error tree of statekit.

Backends translate every driver exception at their boundary into one of these, with
``raise ... from exc``, so no redis-py, SQLAlchemy or asyncpg type reaches a caller::

    StatekitError                  base of everything statekit raises on purpose
    ├── ConfigurationError         bad URL, unknown scheme, missing driver extra, bad option
    ├── InvalidFilterError         an identity filter (find_scopes, export, erase) is refused
    ├── UnsupportedCapabilityError the backend did not declare the capability a call needs
    ├── StoreClosedError           a call on a store (or its backend) after ``aclose()``
    ├── VersionConflictError       a conditional set lost: someone else wrote first
    └── StateBackendError          the backend failed while doing an operation
        └── BackendUnavailableError   the server cannot be reached (refused, reset, DNS)
            └── BackendTimeoutError   the server did not answer within the timeout

Refused *input* (a bad key, a value that is not JSON, a value over the size limit) is not
an exception on the seed-compatible methods: they return ``(False, message)`` or an empty
result, exactly as the original store did.
"""

from __future__ import annotations


class StatekitError(Exception):
    """Base class of every error statekit raises on purpose."""


class ConfigurationError(StatekitError, ValueError):
    """A URL, option or installation problem found before any I/O."""


class InvalidFilterError(StatekitError, ValueError):
    """An identity filter of ``find_scopes``, ``export`` or ``erase`` was refused before
    any I/O: an unknown field or scope name, a value that is not non-empty text, a type
    without its id, a combination no scope has, or no field at all (an empty filter
    would match every scope, and erasing everything is ``clear_all``'s job, never a
    filter's). Nothing was read or removed."""


class UnsupportedCapabilityError(StatekitError):
    """The backend does not declare the capability this call needs.

    Raised before any I/O so that a host learns at once that, for example, conditional
    sets need a backend with :attr:`~statekit.backends.base.Capability.VERSIONS`.
    """


class StoreClosedError(StatekitError):
    """The store (or its backend) was closed with ``aclose()``; nothing can be called on it any more."""  # noqa: E501


class VersionConflictError(StatekitError):
    """A conditional set was refused because the stored version differs.

    ``expected`` is the version the caller asked for, ``actual`` the one stored
    (0 when the key is absent).
    """

    def __init__(self, scope_key: str, state_key: str, expected: int, actual: int) -> None:
        self.scope_key = scope_key
        self.state_key = state_key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Version conflict on {state_key!r}: expected version {expected}, found {actual}"
        )


class StateBackendError(StatekitError):
    """The backend failed while doing an operation; the store itself is still usable."""


class BackendUnavailableError(StateBackendError):
    """The server cannot be reached; retry later, the client reconnects by itself.

    Raised by a write whose connection dropped before its reply arrived, the write may
    have been applied (once): writes are never sent twice.
    """


class BackendTimeoutError(BackendUnavailableError):
    """The server did not answer within the configured timeout.

    A subclass of :class:`BackendUnavailableError` because a caller usually handles both
    the same way (back off, retry); it may have applied a write whose reply was lost.
    """
