"""Native OpenTelemetry traces and metrics, through the OpenTelemetry API only.

With the ``otel`` extra installed and an SDK configured by the host (a global tracer or
meter provider, or providers passed in a :class:`Telemetry`), every store operation makes
a CLIENT span and a ``db.client.operation.duration`` measurement, and the backends report
batch sizes, queue waits and connections in use (see ``docs/telemetry.md`` for every name).
Without the API package, without an SDK, with ``connect(..., telemetry=False)`` or
``STATEKIT_TELEMETRY=0``, the store is left as it is: its methods are not wrapped at all,
so telemetry that is off costs nothing on the hot path.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statekit.store import StateStore

__all__ = ["Telemetry", "instrument_store"]

#: The variables through which the OpenTelemetry API loads a global provider by itself.
_PROVIDER_VARIABLES = ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")


@dataclass(frozen=True)
class Telemetry:
    """Where a store's telemetry goes, and whether spans may name scope keys.

    ``tracer_provider`` and ``meter_provider`` default to the global ones (set by the
    host with ``opentelemetry.trace.set_tracer_provider``...), read when the store is
    created: configure the SDK first. Passing them is how one process (a test) gives
    each store its own. ``scope_keys=True`` adds ``statekit.scope_key`` to spans: a
    scope key identifies a person's or a conversation's state, so it is off by default
    and never on a metric.
    """

    tracer_provider: Any = None
    meter_provider: Any = None
    scope_keys: bool = False


def instrument_store(store: StateStore, telemetry: bool | Telemetry) -> bool:
    """Wrap ``store``'s operations in spans and measurements; ``True`` if it did.

    Nothing happens (``False``) when ``telemetry`` is ``False``, the OpenTelemetry API
    is not installed, or neither a tracer nor a meter provider is configured (checked
    without importing the API when nothing in the process has imported it yet).
    """
    if telemetry is False or (telemetry is True and not _provider_possible()):
        return False
    try:
        from statekit.telemetry.instruments import Instruments
    except ImportError:  # no opentelemetry-api: the extra is not installed
        return False
    config = telemetry if isinstance(telemetry, Telemetry) else Telemetry()
    instruments = Instruments.create(config, store.backend)
    if instruments is None:
        return False
    from statekit.telemetry.instrument import wrap_operations

    wrap_operations(store, instruments)
    return True


def _provider_possible() -> bool:
    """Whether a global provider may be configured, without importing OpenTelemetry.

    A host sets one with ``opentelemetry.trace.set_tracer_provider`` (so the API is
    already imported) or names one in ``OTEL_PYTHON_*_PROVIDER``. With neither, the
    globals are the API's no-op proxies: importing the API (tens of milliseconds, paid
    by every short ``statekit`` command) would only find that out.
    """
    return "opentelemetry" in sys.modules or any(os.environ.get(v) for v in _PROVIDER_VARIABLES)
