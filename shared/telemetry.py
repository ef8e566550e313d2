"""OpenTelemetry: one span per message, and the metrics the workbook and the alerts read.

`Telemetry` records through whichever providers it is given: the global ones in production
(`configure_azure_monitor_once` sets them up with Azure Monitor's exporters), the SDK's in-memory ones
in tests. With neither, the OpenTelemetry API's no-op providers make every call nearly free, so the
tests and the local stack run without Application Insights. The global providers are looked up
through the API's proxies, so a `Telemetry` built before the exporters are set up still records.

Names are camelCase like the outcome and the structured logs (shared/logs.py), so one vocabulary
serves spans, metric dimensions and log fields; docs/operations.md queries them, and a test checks
that every field a query names is one this code emits.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import _logs, metrics, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from shared.contract.errors import CertStateError
from shared.contract.outcomes import Outcome, Status

if TYPE_CHECKING:  # the SDK loads with the first message (`_export_to`)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.sampling import Sampler

SCOPE: Final = "certstate"
"""The instrumentation scope, and the logger whose records are exported (see `configure_azure_monitor_once`)."""

MESSAGE_SPAN: Final = "certstate.message"
OUTCOMES: Final = "certstate.outcomes"
REDELIVERIES: Final = "certstate.redeliveries"
DEFERRALS: Final = "certstate.deferrals"
GRAPH_RESPONSES: Final = "certstate.graph.responses"
GRAPH_DURATION: Final = "certstate.graph.duration"
WAITS: Final = "certstate.waits"
QUEUE_DEPTH: Final = "certstate.queue.depth"
AUDIT_FAILURES: Final = "certstate.audit.failures"
BREAKER_OPEN: Final = "certstate.breaker.open"
RETRY_AFTER_CAPPED: Final = "certstate.graph.retry_after_capped"

RETRY: Final = "retry"
"""The span's `status` when the delivery is handed back to the queue (no outcome yet)."""
DEFERRED: Final = "deferred"
"""The span's `status` when a delayed copy went back on the queue (no outcome yet)."""

# No instrumentation library: the message span is the one span per message. The Graph PATCH is on it
# (httpStatus, requestId, attempts) and in the graph metrics; each retried attempt is a `graphResponse`
# line. A dependency span per PATCH (`requests`) and per audit write (`azure_sdk`) said the same again at
# about a third of the telemetry's CPU per message (docs/benchmarks.md, section 6).

EXPORTED_LOG_LEVEL: Final = logging.WARNING
"""The lowest level exported. An INFO line says what the message span says (an `outcome` that is not
`failed`, a deferral), and each exported item costs about half a millisecond of CPU in the exporter;
warnings and errors (a `failed` outcome, a retry, an audit failure) are exported whatever the sampling."""

_configure_lock = threading.Lock()
_configured = False


class Telemetry:
    """The instruments certstate records on; one per process (shared/wiring.py builds it)."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self._meter = meter
        self._breaker_is_open: Callable[[], bool] | None = None
        self._outcomes = meter.create_counter(
            OUTCOMES, unit="{message}", description="Outcomes written, by status, error code and tenant"
        )
        self._redeliveries = meter.create_counter(
            REDELIVERIES, unit="{delivery}", description="Deliveries handed back to the queue for another try, by code"
        )
        self._deferrals = meter.create_counter(
            DEFERRALS, unit="{delivery}", description="Deliveries put back with a delay, by code"
        )
        self._graph_responses = meter.create_counter(
            GRAPH_RESPONSES, unit="{response}", description="Graph answers by status class and status"
        )
        self._graph_duration = meter.create_histogram(
            GRAPH_DURATION, unit="ms", description="Time from sending a PATCH to its answer (or to giving up on one)"
        )
        self._waits = meter.create_histogram(
            WAITS,
            unit="ms",
            description="Time a write waited: for the write budget (pacer), a Retry-After (retryAfter), a backoff",
        )
        self._queue_depth = meter.create_gauge(
            QUEUE_DEPTH, unit="{message}", description="Approximate message counts of the input, poison, result queues"
        )
        self._retry_after_capped = meter.create_counter(
            RETRY_AFTER_CAPPED, unit="{response}", description="Retry-After values beyond the wait ceiling, capped"
        )
        self._audit_failures = meter.create_counter(
            AUDIT_FAILURES, unit="{outcome}", description="Outcomes whose audit row could not be written"
        )

    @contextmanager
    def message_span(self, message_id: str, dequeue_count: int) -> Iterator[Span]:
        """The span of one delivery, current while it runs; `outcome` or `handed_back` completes it."""
        with self._tracer.start_as_current_span(
            MESSAGE_SPAN,
            kind=SpanKind.CONSUMER,
            attributes={"messageId": message_id, "dequeueCount": dequeue_count},
            record_exception=False,  # a retry is not an error of the message; a bug is logged with its traceback
            set_status_on_exception=False,
        ) as span:
            yield span

    def outcome(self, outcome: Outcome, tenant_name: str | None = None) -> None:
        """Count the outcome and describe it on the message span; a `failed` one marks it as an error.

        `tenant_name`: the tenant's registry display name, so the workbook can split by it.
        """
        code = outcome.error.code if outcome.error else None
        tenant = outcome.target.tenant_id  # None: the home tenant
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(
                _present(
                    status=outcome.status.value,
                    code=code,
                    correlationId=outcome.correlation_id,
                    tenantId=tenant,
                    tenantName=tenant_name,
                    httpStatus=outcome.http_status,
                    requestId=outcome.graph.request_id if outcome.graph else None,
                    attempts=outcome.attempts,
                )
            )
            if outcome.status is Status.FAILED:
                span.set_status(StatusCode.ERROR, code)
        self._outcomes.add(1, _present(status=outcome.status.value, code=code, tenantId=tenant, tenantName=tenant_name))

    def handed_back(self, err: CertStateError | None, correlation_id: str) -> None:
        """A delivery that ends in a retry: counted, and the span says why (not an error: no outcome yet)."""
        code = err.code.value if err else "internalError"
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({"status": RETRY, "code": code, "correlationId": correlation_id})
            if err is not None:
                span.set_attributes(_present(httpStatus=err.http_status, requestId=err.trace.request_id))
        self._redeliveries.add(1, {"code": code})

    def deferred(self, code: str) -> None:
        """A delivery put back on the queue with a delay, by the code it would fail with if it waited too long."""
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("status", DEFERRED)
            span.set_attribute("code", code)
        self._deferrals.add(1, {"code": code})

    def graph_response(self, status: int | None, seconds: float) -> None:
        """One Graph answer (`None`: no answer: timeout or dropped connection) and how long it took."""
        dimensions = {"statusClass": f"{status // 100}xx", "httpStatus": str(status)} if status else _NO_ANSWER
        self._graph_responses.add(1, dimensions)
        self._graph_duration.record(seconds * 1000, {"statusClass": dimensions["statusClass"]})

    def retry_after_capped(self, status: int | None) -> None:
        """Graph asked to wait longer than the ceiling; writes resumed before its Retry-After ran out."""
        self._retry_after_capped.add(1, {"httpStatus": str(status) if status else "none"})

    def waited(self, reason: str, seconds: float) -> None:
        """Time a write spent waiting before it could be sent: `pacer`, `retryAfter` or `backoff`."""
        self._waits.record(seconds * 1000, {"reason": reason})

    def queue_depth(self, queue: str, count: int) -> None:
        """The approximate message count of one queue: `input`, `poison` or `result`."""
        self._queue_depth.set(count, {"queue": queue})

    def watch_breaker(self, is_open: Callable[[], bool]) -> None:
        """Report the circuit breaker's state (1 open, 0 closed) whenever metrics are collected.

        The latest breaker watched is the one reported (a rebuilt pipeline replaces its breaker).
        """
        first = self._breaker_is_open is None
        self._breaker_is_open = is_open
        if first:
            self._meter.create_observable_gauge(
                BREAKER_OPEN, callbacks=[self._observe_breaker], unit="1", description="1 while Graph requests are held"
            )

    def _observe_breaker(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        is_open = self._breaker_is_open
        return [metrics.Observation(int(is_open()))] if is_open else []

    def audit_failed(self, code: str) -> None:
        """An outcome went out without its audit row."""
        self._audit_failures.add(1, {"code": code})


_NO_ANSWER: Final = {"statusClass": "none", "httpStatus": "none"}


def _present(**values: str | int | None) -> dict[str, str | int]:
    """Attributes and dimensions: absent values are left out, not sent as a placeholder."""
    return {key: value for key, value in values.items() if value is not None}


def configure_azure_monitor_once(connection_string: str | None) -> bool:
    """Export to Application Insights once per process, if a connection string is set; whether it is.

    The providers of the OpenTelemetry SDK with azure-monitor-opentelemetry-exporter's exporters, set up
    here rather than by the Azure Monitor distro: the distro adds nothing certstate uses (its
    instrumentations are all off, live metrics and performance counters too) and costs its import, the
    look-up of every installed instrumentation's entry point and memory on the first message
    (docs/benchmarks.md, section 6). Spans, metrics and the `certstate` logger's records are exported; with
    the app setting `PYTHON_ENABLE_OPENTELEMETRY=true` the Python worker tells the host it does so, and the
    host stops relaying the worker's log lines itself: each line reaches Application Insights once
    (docs/operations.md, "One copy of each log line"). Entra authentication: the exporters read
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING. Spans are sampled as OTEL_TRACES_SAMPLER(_ARG) say
    (`_sampler`); log records never are. Lines below `EXPORTED_LOG_LEVEL` are not exported: the message
    span already carries them.
    """
    global _configured  # noqa: PLW0603 - the providers are process-global, set once
    if not connection_string:
        return False
    with _configure_lock:
        if not _configured:
            _export_to(connection_string)
            _configured = True
    return True


def _export_to(connection_string: str) -> None:
    """Set the global tracer, meter and logger providers, each with its Azure Monitor exporter."""
    # Only when used: the SDK and the exporter load with the first message, not at import.
    from azure.monitor.opentelemetry.exporter import (  # noqa: PLC0415
        AzureMonitorLogExporter,
        AzureMonitorMetricExporter,
        AzureMonitorTraceExporter,
    )
    from opentelemetry.sdk._logs import LoggerProvider  # noqa: PLC0415
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor  # noqa: PLC0415
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    resource = _resource()
    tracer_provider = TracerProvider(sampler=_sampler(), resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(AzureMonitorTraceExporter(connection_string=connection_string))
    )
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(AzureMonitorMetricExporter(connection_string=connection_string))
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=resource, views=_views()))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(AzureMonitorLogExporter(connection_string=connection_string))
    )
    _logs.set_logger_provider(logger_provider)
    ours = logging.getLogger(SCOPE)
    ours.setLevel(logging.INFO)  # INFO lines still reach the host's log stream through the root logger
    ours.addHandler(_ExportingHandler(logger_provider.get_logger(SCOPE)))


FIXED_PERCENTAGE: Final = "microsoft.fixed_percentage"
"""The OTEL_TRACES_SAMPLER value infra sets: Application Insights' sampler, the share in OTEL_TRACES_SAMPLER_ARG."""


def _sampler() -> Sampler | None:
    """Application Insights' fixed-percentage sampler, which records the rate so `itemCount` counts the rest.

    Without OTEL_TRACES_SAMPLER every span is kept; an OpenTelemetry sampler name other than
    `FIXED_PERCENTAGE` is left to the SDK (None), which reads it itself. A share that is not a number
    from 0 to 1 keeps every span: a typo loses no trace.
    """
    from azure.monitor.opentelemetry.exporter import ApplicationInsightsSampler  # noqa: PLC0415

    name = os.environ.get("OTEL_TRACES_SAMPLER")
    if name is not None and name != FIXED_PERCENTAGE:
        return None
    try:
        ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1")) if name else 1.0
    except ValueError:
        ratio = 1.0
    return ApplicationInsightsSampler(sampling_ratio=ratio if 0.0 <= ratio <= 1.0 else 1.0)


def _resource() -> Resource:
    """The resource of every item: the function app's name as the cloud role (`cloud_RoleName`).

    WEBSITE_SITE_NAME is the app's name on Azure Functions; OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES, read by the SDK, take precedence.
    """
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415

    site = os.environ.get("WEBSITE_SITE_NAME")
    named = (
        site
        and "OTEL_SERVICE_NAME" not in os.environ
        and SERVICE_NAME not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    )
    return Resource.create({SERVICE_NAME: site, "cloud.provider": "azure"} if named else {})


_SEVERITY: Final = {
    logging.DEBUG: _logs.SeverityNumber.DEBUG,
    logging.INFO: _logs.SeverityNumber.INFO,
    logging.WARNING: _logs.SeverityNumber.WARN,
    logging.ERROR: _logs.SeverityNumber.ERROR,
    logging.CRITICAL: _logs.SeverityNumber.FATAL,
}


class _ExportingHandler(logging.Handler):
    """Hands the `certstate` logger's records from `EXPORTED_LOG_LEVEL` up to the OpenTelemetry logger.

    The record's line (shared/logs.py's JSON) is the body, in the context of the span that is current, so
    `operation_Id` joins it to its message; an exception logged with its traceback goes with it.
    """

    def __init__(self, logger: _logs.Logger) -> None:
        super().__init__(EXPORTED_LOG_LEVEL)
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        from opentelemetry import context  # noqa: PLC0415 - loaded with the API already

        exception = record.exc_info[1] if record.exc_info else None
        try:  # a log line never costs a message its outcome
            self._logger.emit(
                timestamp=int(record.created * 1e9),
                context=context.get_current(),
                severity_number=_SEVERITY.get(record.levelno, _logs.SeverityNumber.UNSPECIFIED),
                severity_text="WARN" if record.levelname == "WARNING" else record.levelname,
                body=record.getMessage(),
                exception=exception,
            )
        except Exception:  # logging's own contract: report on stderr, never raise
            self.handleError(record)


def _views() -> list[Any]:
    """Histograms without buckets: Application Insights keeps count, sum, min and max of each, never the buckets."""
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View  # noqa: PLC0415

    return [View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(())) for name in _HISTOGRAMS]


_HISTOGRAMS: Final = (GRAPH_DURATION, WAITS)


def flush() -> None:
    """Export what is buffered now (a timer run may be the instance's last act before it is frozen)."""
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            force_flush()
