"""OpenTelemetry: one span per message, and the metrics the workbook and the alerts read.

`Telemetry` records through whichever providers it is given: the global ones in production (the
Azure Monitor distro sets them up in `configure_azure_monitor_once`), the SDK's in-memory ones in
tests. With neither, the OpenTelemetry API's no-op providers make every call nearly free, so the
tests and the local stack run without Application Insights. The global providers are looked up
through the API's proxies, so a `Telemetry` built before the distro is configured still records.

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
from typing import Any, Final

from opentelemetry import _logs, metrics, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from shared.contract.errors import CertStateError
from shared.contract.outcomes import Outcome, Status

SCOPE: Final = "certstate"
"""The instrumentation scope, and the logger whose records the distro exports (see `configure_azure_monitor_once`)."""

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

# Every instrumentation the distro would switch on: the message span is the one span per message. The
# Graph PATCH is on it (httpStatus, requestId, attempts) and in the graph metrics; each retried attempt
# is a `graphResponse` line. A dependency span per PATCH (`requests`) and per audit write (`azure_sdk`)
# said the same again at about a third of the telemetry's CPU per message (docs/benchmarks.md, section 6).
_UNUSED_INSTRUMENTATIONS: Final = (
    "azure_sdk", "django", "fastapi", "flask", "httpx", "httpx2", "psycopg2", "requests", "urllib", "urllib3",
)  # fmt: skip

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
    """Set up the Azure Monitor distro once per process, if a connection string is set; whether it is.

    The distro exports spans, metrics and the `certstate` logger's records; with the app setting
    `PYTHON_ENABLE_OPENTELEMETRY=true` the Python worker tells the host it does so, and the host stops
    relaying the worker's log lines itself: each line reaches Application Insights once
    (docs/operations.md, "One copy of each log line"). Entra authentication comes from
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING and span sampling from OTEL_TRACES_SAMPLER(_ARG),
    both read by the distro; log records are never sampled with their trace. Lines below
    `EXPORTED_LOG_LEVEL` are not exported: the message span already carries them.
    """
    global _configured  # noqa: PLW0603 - the distro sets process-global providers, once
    if not connection_string:
        return False
    with _configure_lock:
        if not _configured:
            from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 - only when used

            # The distro's own default is 5 traces a second, which would drop message spans at the write
            # limit; keep all unless OTEL_TRACES_SAMPLER(_ARG) says otherwise (infra's traceSamplingPercent, 10 %).
            sampling = {} if "OTEL_TRACES_SAMPLER" in os.environ else {"sampling_ratio": 1.0}
            ours = logging.getLogger(SCOPE)
            before = set(ours.handlers)
            configure_azure_monitor(
                connection_string=connection_string,
                **sampling,
                logger_name=SCOPE,
                enable_live_metrics=False,
                enable_performance_counters=False,
                enable_trace_based_sampling_for_logs=False,
                instrumentation_options={name: {"enabled": False} for name in _UNUSED_INSTRUMENTATIONS},
                views=_views(),
            )
            ours.setLevel(logging.INFO)  # INFO lines still reach the host's log stream through the root logger
            for exporting in set(ours.handlers) - before:
                exporting.setLevel(EXPORTED_LOG_LEVEL)
            _configured = True
    return True


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
