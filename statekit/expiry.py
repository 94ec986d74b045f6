"""Scopes that end: lifetimes per scope name, and what a store passes its backend for them.

A lifetime is configured per scope name (``conversation``, ``actor``, ``subject``,
``runner``). Every accepted write to a scope moves the whole scope's deadline to now +
its lifetime; reads move it too only with ``refresh_on_read``. A scope without a
configured lifetime never expires: its writes leave any deadline as it is. The backend
does the timekeeping (see :class:`~statekit.backends.base.ExpiringBackend`); this module
only turns configuration into the ``ttl`` each call carries, and refuses expiry on a
backend that cannot keep it rather than ignoring it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from statekit.backends.base import (
    NEVER,
    Capability,
    ExpiringBackend,
    StateBackend,
    SweepResult,
    VersionedBackend,
)
from statekit.errors import ConfigurationError, UnsupportedCapabilityError
from statekit.scope import VALID_STATE_SCOPES
from statekit.sweeper import Sweeper
from statekit.validation import Refusal

#: What a lifetime may be given as: seconds (``int``/``float`` > 0), a ``timedelta``,
#: or text: ``"90"`` (seconds), ``"30s"``, ``"15m"``, ``"12h"``, ``"30d"``, ``"never"``.
Duration = int | float | timedelta | str

#: The longest lifetime accepted (100 years): beyond it use ``"never"``.
MAX_DURATION = 100 * 365 * 86400.0

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_TEXT = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)", re.ASCII)
_FORMS = "seconds > 0, a timedelta, or text such as '90', '30s', '15m', '12h', '30d', 'never'"


def parse_duration(value: object, what: str = "expiry") -> float:
    """``value`` in seconds (:data:`~statekit.NEVER` for ``"never"``), or a
    :class:`~statekit.errors.ConfigurationError` naming ``what`` (the argument) if given.

    Zero, negative, NaN and over :data:`MAX_DURATION` are refused: a lifetime that ends
    before it starts is a mistake, never "expire at once".
    """
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text == "never":
            return NEVER
        match = _DURATION_TEXT.fullmatch(text)
        if match:
            seconds = float(match[1]) * _UNITS[match[2]]
    if seconds == NEVER:
        return NEVER
    if seconds is None or not 0 < seconds <= MAX_DURATION:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
        named = f"{what}: " if what else ""
        raise ConfigurationError(f"{named}{shown} is not a lifetime ({_FORMS}; at most 100 years)")
    return seconds


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """Each scope name's lifetime in seconds; :data:`~statekit.NEVER` makes its writes
    remove deadlines (a scope that expired before stops expiring). A name left out has
    no lifetime: its writes leave deadlines as they are."""

    ttls: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, expiry: Mapping[str, Duration | None] | ExpiryPolicy | None) -> ExpiryPolicy:
        """From ``{"conversation": timedelta(days=30), "subject": "12h"}``; a ``None``
        value is left out. Unknown scope names and bad lifetimes raise
        :class:`~statekit.errors.ConfigurationError`."""
        if isinstance(expiry, ExpiryPolicy):
            return expiry
        if expiry is None:
            return cls()
        if not isinstance(expiry, Mapping):
            raise ConfigurationError("expiry must map scope names to lifetimes")
        ttls: dict[str, float] = {}
        for scope, value in expiry.items():
            if scope not in VALID_STATE_SCOPES:
                names = ", ".join(VALID_STATE_SCOPES)
                raise ConfigurationError(f"expiry: unknown scope {scope!r} (scopes: {names})")
            if value is not None:
                ttls[scope] = parse_duration(value, f"expiry[{scope!r}]")
        return cls(ttls)

    def __bool__(self) -> bool:
        return bool(self.ttls)

    def for_scope(self, scope: str) -> float | None:
        """The lifetime of scope name ``scope``; ``None`` when it has none."""
        return self.ttls.get(scope)

    def for_scope_key(self, scope_key: str) -> float | None:
        """The lifetime of the scope ``scope_key`` names (``"<scope>:..."``)."""
        scope, colon, _ = scope_key.partition(":")
        return self.ttls.get(scope) if colon else None


class StoreExpiry:
    """A :class:`~statekit.StateStore`'s expiry: the ``ttl`` of each backend call,
    introspection, sweeping and the background sweeper."""

    def __init__(
        self,
        backend: StateBackend,
        expiry: Mapping[str, Duration | None] | ExpiryPolicy | None,
        refresh_on_read: bool,
        sweep_interval: Duration | None,
    ) -> None:
        self.policy = ExpiryPolicy.parse(expiry)
        self.refresh_on_read = bool(refresh_on_read)
        interval = (
            None if sweep_interval is None else parse_duration(sweep_interval, "sweep_interval")
        )
        if interval == NEVER:
            raise ConfigurationError("sweep_interval: 'never' is no interval; leave it unset")
        self.supported = Capability.EXPIRY in backend.capabilities
        if not self.supported and (self.policy or self.refresh_on_read or interval):
            raise ConfigurationError(
                f"{type(backend).__name__} does not support expiry (Capability.EXPIRY): "
                "expiry, refresh_on_read and sweep_interval need a backend that does"
            )
        self._backend = backend
        self.sweeper = None if interval is None else Sweeper(self._expiring, interval)

    @property
    def _expiring(self) -> ExpiringBackend:
        return cast(ExpiringBackend, self._backend)

    def override(self, expiry: Duration) -> float:
        """The ``ttl`` of a ``state_set(..., expiry=...)``: refused input is a
        :class:`~statekit.validation.Refusal`, a backend without expiry an
        :class:`~statekit.errors.UnsupportedCapabilityError` (before any I/O)."""
        if not self.supported:
            raise UnsupportedCapabilityError(
                f"{type(self._backend).__name__} does not support expiry "
                "(Capability.EXPIRY): state_set(..., expiry=...) is unavailable"
            )
        try:
            return parse_duration(expiry)
        except ConfigurationError as bad:
            raise Refusal(str(bad)) from None

    def read_ttl(self, scope_key: str) -> float | None:
        """The refresh a read of ``scope_key`` carries: only with ``refresh_on_read``."""
        return self.policy.for_scope_key(scope_key) if self.refresh_on_read else None

    def read_ttls(self, scope_keys: list[str]) -> dict[str, float] | None:
        """The refreshes a read of several scopes carries: only with ``refresh_on_read``."""
        if not self.refresh_on_read:
            return None
        policy = self.policy
        ttls = {key: ttl for key in scope_keys if (ttl := policy.for_scope_key(key)) is not None}
        return ttls or None

    # ---- backend calls, with a ttl only where there is one ------------------------------
    # Each returns the backend's own coroutine for the store to await: a read goes through
    # one coroutine, not two (a good part of a small read's cost).

    def get(self, scope_key: str, state_key: str) -> Awaitable[str | None]:
        ttl = self.read_ttl(scope_key)
        if ttl is None:
            return self._backend.get(scope_key, state_key)
        return self._expiring.get(scope_key, state_key, ttl)

    def get_versioned(
        self, backend: VersionedBackend, scope_key: str, state_key: str
    ) -> Awaitable[tuple[str | None, int]]:
        ttl = self.read_ttl(scope_key)
        if ttl is None:
            return backend.get_versioned(scope_key, state_key)
        return self._expiring.get_versioned(scope_key, state_key, ttl)

    def read_scopes(self, scope_keys: list[str]) -> Awaitable[dict[str, dict[str, str]]]:
        ttls = self.read_ttls(scope_keys)
        if ttls is None:
            return self._backend.read_scopes(scope_keys)
        return self._expiring.read_scopes(scope_keys, ttls)

    async def scope_deadline(self, scope_key: str) -> datetime | None:
        if not self.supported:
            return None
        return await self._expiring.scope_deadline(scope_key)

    async def sweep(self, batch_size: int) -> SweepResult:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int of at least 1, not {batch_size!r}")
        if not self.supported:
            return SweepResult()
        return await self._expiring.sweep_expired(batch_size)
