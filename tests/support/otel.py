"""The OpenTelemetry SDK with in-memory exporters, for tests that check what certstate emits."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.telemetry import SCOPE, Telemetry, _ExportingHandler


@dataclass(frozen=True)
class Point:
    """One metric stream: its attributes and its value (a sum, a histogram's count and sum, or a gauge)."""

    attributes: dict[str, Any]
    value: float
    count: int = 0


@dataclass
class Captured:
    """Everything a `Telemetry` built on these providers emitted."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    spans_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    logs_exporter: InMemoryLogRecordExporter
    telemetry: Telemetry = field(init=False)

    def __post_init__(self) -> None:
        self.telemetry = Telemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans_exporter.get_finished_spans() if name is None or s.name == name]

    def metrics(self) -> dict[str, list[Point]]:
        """Metric name -> its streams, as the reader collects them now (cumulative)."""
        found: dict[str, list[Point]] = {}
        data = self.metric_reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        attributes = dict(point.attributes or {})
                        if isinstance(point, NumberDataPoint):
                            found.setdefault(metric.name, []).append(Point(attributes, point.value))
                        else:  # a histogram
                            found.setdefault(metric.name, []).append(Point(attributes, point.sum, point.count))
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of a metric's streams whose attributes include these."""
        return sum(p.value for p in self.metrics().get(name, []) if attributes.items() <= p.attributes.items())

    def log_events(self) -> list[dict[str, Any]]:
        """The structured log lines exported, parsed (shared/logs.py writes one JSON object per line)."""
        events = []
        for data in self.logs_exporter.get_finished_logs():
            body = data.log_record.body
            events.append(json.loads(body) if isinstance(body, str) and body.startswith("{") else {"text": body})
        return events


@contextmanager
def capture() -> Iterator[Captured]:
    """SDK providers with in-memory exporters, and the exporting log handler on the `certstate` logger."""
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    captured = Captured(tracer_provider, MeterProvider(metric_readers=[reader]), logger_provider, spans, reader, logs)
    handler = _ExportingHandler(logger_provider.get_logger(SCOPE))  # production's handler, as deployed
    logger = logging.getLogger(SCOPE)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        tracer_provider.shutdown()
        captured.meter_provider.shutdown()
        logger_provider.shutdown()
