"""In-memory OpenTelemetry providers for the telemetry tests: each test its own, never
the process-wide ones (those can be set only once)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from statekit import Telemetry


class Observed:
    """A :class:`Telemetry` whose spans and measurements are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(self.tracer_provider, self.meter_provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` (none if it was never recorded)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in [] if data is None else data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: object) -> float:
        """The sum of metric ``name``'s points whose attributes include ``attributes``."""
        total = 0.0
        for point in self.points(name):
            if all(point.attributes.get(key) == value for key, value in attributes.items()):
                total += point.value if hasattr(point, "value") else point.sum
        return total

    def all_attributes(self) -> list[dict[str, Any]]:
        """Every attribute set recorded: each span's, each data point's."""
        found: list[dict[str, Any]] = [dict(span.attributes or {}) for span in self.spans()]
        data = self.reader.get_metrics_data()
        for resource in [] if data is None else data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.extend(dict(point.attributes or {}) for point in metric.data.data_points)
        return found
