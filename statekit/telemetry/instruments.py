"""The tracer and the metric instruments of one store, made once when it is created.

Every attribute set a measurement carries is built here, ahead of the calls that use it
(per operation and scope name, per refusal reason): a call looks its dict up and hands
it to the SDK as it is, never building one on the hot path.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from statekit.scope import VALID_STATE_SCOPES
from statekit.telemetry import Telemetry
from statekit.telemetry.attributes import (
    BATCH_KIND,
    DB_OPERATION,
    POOL_NAME,
    REFUSAL_REASON,
    SCOPE,
    STATE,
    backend_attributes,
)
from statekit.telemetry.recorder import Recorder
from statekit.validation import REFUSAL_REASONS

__all__ = ["Instruments", "OperationAttributes"]

#: Seconds: finer than the conventions' advice at the low end, where a Redis call
#: (tens of microseconds) and a local SQL call (a millisecond) fall.
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Callers per round trip: the auto-pipeline sends up to 512 commands at once.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

_NO_SDK_TRACERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_NO_SDK_METERS = ("_ProxyMeterProvider", "NoOpMeterProvider")
_NAME = "statekit"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("statekit")
    except PackageNotFoundError:  # run from a source tree
        return "0"


class _NoSpans:
    """The tracer of a store with a meter provider but no tracer provider: every span is
    the API's invalid one, handed back without the look-up of the caller's current span
    that the API's own no-op tracer makes per call."""

    @staticmethod
    def start_span(name: str, *args: Any, **kwargs: Any) -> trace.Span:
        return trace.INVALID_SPAN


class OperationAttributes:
    """The attribute dicts of one operation: per scope name, and per refusal reason."""

    __slots__ = ("by_scope", "name", "refusals")

    def __init__(self, name: str, backend: dict[str, str | int]) -> None:
        self.name = name
        base: dict[str, str | int] = {**backend, DB_OPERATION: name}
        self.by_scope: dict[str | None, dict[str, str | int]] = {None: base}
        for scope in VALID_STATE_SCOPES:
            self.by_scope[scope] = {**base, SCOPE: scope}
        self.refusals = {reason: {**base, REFUSAL_REASON: reason} for reason in REFUSAL_REASONS}


class Instruments:
    """The tracer, the instruments and the backend's attributes of one store."""

    def __init__(self, tracer: Any, meter: Any, backend: object, scope_keys: bool) -> None:
        self.tracer = tracer
        self.scope_keys = scope_keys
        self.backend = backend_attributes(backend)
        self.duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of statekit store operations.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.refusals = meter.create_counter(
            "statekit.refusals", unit="{refusal}", description="Inputs refused, by reason."
        )
        self.conflicts = meter.create_counter(
            "statekit.version_conflicts",
            unit="{conflict}",
            description="Conditional sets whose expected version was not the stored one.",
        )
        self.removed = {
            (operation, what): meter.create_counter(
                f"statekit.{operation}.{what}",
                unit="{" + what[:-1] + "}",
                description=f"{what.capitalize()} removed by {operation}.",
            )
            for operation in ("sweep", "erasure")
            for what in ("scopes", "entries")
        }
        self._operations: dict[str, OperationAttributes] = {}
        recorder = getattr(backend, "recorder", None)
        if isinstance(recorder, Recorder):
            self._watch(meter, recorder)

    @classmethod
    def create(cls, config: Telemetry, backend: object) -> Instruments | None:
        """The instruments for ``backend``, or ``None`` when no SDK is configured."""
        tracer_provider = config.tracer_provider or trace.get_tracer_provider()
        meter_provider = config.meter_provider or metrics.get_meter_provider()
        tracing = not isinstance(tracer_provider, _NO_SDK_TRACERS)
        metering = type(meter_provider).__name__ not in _NO_SDK_METERS
        if not (tracing or metering):
            return None
        tracer = tracer_provider.get_tracer(_NAME, _version()) if tracing else _NoSpans()
        meter = (
            meter_provider.get_meter(_NAME, _version()) if metering else metrics.NoOpMeter(_NAME)
        )
        return cls(tracer, meter, backend, config.scope_keys)

    def operation(self, name: str) -> OperationAttributes:
        """The attribute dicts of operation ``name`` (made on first use, then shared)."""
        found = self._operations.get(name)
        if found is None:
            found = self._operations[name] = OperationAttributes(name, self.backend)
        return found

    def _watch(self, meter: Any, recorder: Recorder) -> None:
        """Batch sizes and gate waits from ``recorder``; places in use read from it."""
        batch = meter.create_histogram(
            "statekit.batch.size",
            unit="{operation}",
            description="Callers whose operations went to the server in one round trip.",
            explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
        )
        wait = meter.create_histogram(
            "db.client.connection.wait_time",
            unit="s",
            description="Time an operation queued for a connection (only those that queued).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        kinds = {kind: {**self.backend, BATCH_KIND: kind} for kind in ("pipeline", "coalesced")}
        pool = {**self.backend, POOL_NAME: str(self.backend.get("db.system.name", "other"))}
        used, idle = {**pool, STATE: "used"}, {**pool, STATE: "idle"}

        def observe(options: CallbackOptions) -> list[Observation]:
            in_use, free = recorder.connections()
            return [Observation(in_use, used), Observation(free, idle)]

        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[observe],
            unit="{connection}",
            description="Connection places of the gate in front of the pool, by state.",
        )
        recorder.attach(
            lambda kind, size: batch.record(size, kinds.get(kind) or kinds["coalesced"]),
            lambda seconds: wait.record(seconds, pool),
        )
