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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statekit.store import StateStore

__all__ = ["Telemetry", "instrument_store"]


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
    is not installed, or neither a tracer nor a meter provider is configured.
    """
    if telemetry is False:
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
