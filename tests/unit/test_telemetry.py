"""What an operator sees of a message in Application Insights: its span, the metrics, its log lines.

Captured with the OpenTelemetry SDK's in-memory exporters (tests/otel.py); the pipeline runs with a
recording Graph port, so each case is one outcome the contract defines.
"""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from shared.contract.errors import (
    DeferralReason,
    DeferralRequested,
    ErrorCode,
    GraphRefused,
    GraphTrace,
    TransientError,
)
from shared.graph.pacing import WritePacer
from shared.pipeline import CertStatePipeline, Delivery
from shared.telemetry import BREAKER_OPEN, DEFERRALS, MESSAGE_SPAN, OUTCOMES, REDELIVERIES, WAITS, Telemetry
from shared.telemetry import _sampler as sampler_of_the_app_settings
from tests.support.deferral_fakes import MemoryDeferrals
from tests.support.otel import Captured, capture
from tests.support.pipeline_fakes import NOW, SECRET_VALUE, RecordingGraph, body, directory


@pytest.fixture
def otel():
    with capture() as captured:
        yield captured


def pipeline(otel: Captured, graph: RecordingGraph, max_dequeue_count: int = 5) -> CertStatePipeline:
    return CertStatePipeline(
        graph=graph, tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=max_dequeue_count,
        clock=lambda: NOW, telemetry=otel.telemetry,
    )  # fmt: skip


def refused(status: int, code: ErrorCode) -> GraphRefused:
    return GraphRefused(code=code, message="no", http_status=status, trace=GraphTrace("req-9", "c-9"), attempts=1)


def test_a_succeeded_message_is_one_consumer_span_with_its_ids(otel):
    pipeline(otel, RecordingGraph()).handle(body(), Delivery("m-1", 2))
    (span,) = otel.spans()
    assert span.name == MESSAGE_SPAN
    assert span.kind is SpanKind.CONSUMER
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "messageId": "m-1",
        "dequeueCount": 2,
        "status": "succeeded",
        "correlationId": "order-4711",
        "httpStatus": 200,
        "requestId": "req-1",
        "attempts": 1,
    }


def test_a_failed_outcome_marks_the_span_as_an_error_and_counts_its_code(otel):
    outcome = pipeline(otel, RecordingGraph(refused(403, ErrorCode.GRAPH_FORBIDDEN))).handle(body(), Delivery("m-1", 1))
    assert outcome is not None
    assert outcome.outcome.status.value == "failed"
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "graphForbidden"
    assert span.attributes is not None
    assert (span.attributes["status"], span.attributes["code"], span.attributes["httpStatus"]) == (
        "failed",
        "graphForbidden",
        403,
    )
    assert otel.total(OUTCOMES, status="failed", code="graphForbidden") == 1
    assert otel.total(OUTCOMES, status="succeeded") == 0


@pytest.mark.parametrize(
    ("document", "status", "code"),
    [
        (b"not json", "rejected", "malformedMessage"),
        (body(expiresAt="2020-01-01T00:00:00Z"), "expired", "messageExpired"),
        (body(dryRun=True), "validated", None),
    ],
)
def test_outcomes_that_are_not_failures_leave_the_span_unmarked(otel, document, status, code):
    pipeline(otel, RecordingGraph()).handle(document, Delivery("m-1", 1))
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["status"] == status
    assert span.attributes.get("code") == code
    dimensions = {"status": status, **({"code": code} if code else {})}
    assert [p.attributes for p in otel.metrics()[OUTCOMES]] == [dimensions]


def test_a_retry_is_counted_as_a_redelivery_not_as_an_outcome(otel):
    throttled = TransientError(code=ErrorCode.GRAPH_THROTTLED, message="429", http_status=429, attempts=4)
    with pytest.raises(TransientError):
        pipeline(otel, RecordingGraph(throttled)).handle(body(), Delivery("m-1", 1))
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert (span.attributes["status"], span.attributes["code"]) == ("retry", "graphThrottled")
    assert otel.total(REDELIVERIES, code="graphThrottled") == 1
    assert OUTCOMES not in otel.metrics()


def test_the_last_delivery_of_a_transient_failure_is_a_failed_outcome(otel):
    throttled = TransientError(code=ErrorCode.GRAPH_THROTTLED, message="429", http_status=429, attempts=4)
    pipeline(otel, RecordingGraph(throttled), max_dequeue_count=3).handle(body(), Delivery("m-1", 3))
    (span,) = otel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert otel.total(OUTCOMES, status="failed", code="graphThrottled") == 1
    assert REDELIVERIES not in otel.metrics()


def test_a_bug_is_handed_back_as_internal_error(otel):
    with pytest.raises(ZeroDivisionError):
        pipeline(otel, RecordingGraph(ZeroDivisionError())).handle(body(), Delivery("m-1", 1))
    assert otel.total(REDELIVERIES, code="internalError") == 1


def test_a_deferral_is_counted_by_the_code_it_would_fail_with(otel):
    requeued: list[tuple[str, int]] = []
    held = DeferralRequested(delay_seconds=12, reason=DeferralReason.BREAKER_OPEN, cause=ErrorCode.GRAPH_UNAVAILABLE)
    deferring = CertStatePipeline(
        graph=RecordingGraph(held), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5,
        requeue=lambda text, delay: requeued.append((text, delay)), deferrals=MemoryDeferrals(), clock=lambda: NOW,
        telemetry=otel.telemetry,
    )  # fmt: skip
    assert deferring.handle(body(), Delivery("m-1", 1)) is None
    assert len(requeued) == 1
    (span,) = otel.spans()
    assert span.attributes is not None
    assert (span.attributes["status"], span.attributes["code"]) == ("deferred", "graphUnavailable")
    assert otel.total(DEFERRALS, code="graphUnavailable") == 1
    assert OUTCOMES not in otel.metrics()


def test_each_log_line_is_exported_once_with_the_span_it_belongs_to(otel):
    pipeline(otel, RecordingGraph()).handle(body(), Delivery("m-0", 1))
    assert otel.log_events() == []  # a succeeded outcome's line is INFO: the host's log stream, not exported
    pipeline(otel, RecordingGraph(refused(404, ErrorCode.GRAPH_NOT_FOUND))).handle(body(), Delivery("m-1", 1))
    events = otel.log_events()
    assert [e["event"] for e in events] == ["outcome"]  # a failed one's is a warning, exported once
    assert events[0]["correlationId"] == "order-4711"
    (record,) = otel.logs_exporter.get_finished_logs()
    span = otel.spans()[-1]
    assert span.context is not None
    assert record.log_record.trace_id == span.context.trace_id
    assert SECRET_VALUE not in str(record.log_record.body)


def test_the_outcome_counter_adds_up_across_messages(otel):
    p = pipeline(otel, RecordingGraph(refused(404, ErrorCode.GRAPH_NOT_FOUND)))
    for n in range(3):
        p.handle(body(), Delivery(f"m-{n}", 1))
    assert otel.total(OUTCOMES, status="succeeded") == 2
    assert otel.total(OUTCOMES, status="failed", code="graphNotFound") == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_time_waiting_for_the_budget_and_for_a_retry_after_is_measured_apart(otel):
    clock = FakeClock()
    pacer = WritePacer(2, 1.0, clock=clock, sleep=clock.sleep, on_wait=otel.telemetry.waited)
    assert pacer.acquire(deadline=10)
    assert pacer.acquire(deadline=10)  # the budget spaces writes 0.5 s apart
    pacer.hold(3.0)
    assert pacer.acquire(deadline=10)  # held by the Retry-After until t = 3.5
    waits = {p.attributes["reason"]: (p.count, p.value) for p in otel.metrics()[WAITS]}
    assert waits == {"pacer": (1, pytest.approx(500.0)), "retryAfter": (1, pytest.approx(3000.0))}


def test_without_an_sdk_the_telemetry_is_a_no_op():
    """No provider configured (tests, the local stack): recording must neither fail nor leak spans."""
    outcome = CertStatePipeline(
        graph=RecordingGraph(), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5, telemetry=Telemetry(),
    ).handle(body(), Delivery("m-1", 1))  # fmt: skip
    assert outcome is not None
    assert outcome.outcome.status.value == "succeeded"


def test_the_breaker_state_is_a_gauge_of_the_latest_breaker(otel):
    states = {"first": True, "second": False}
    otel.telemetry.watch_breaker(lambda: states["first"])
    assert [p.value for p in otel.metrics()[BREAKER_OPEN]] == [1]
    otel.telemetry.watch_breaker(lambda: states["second"])  # a rebuilt pipeline: one gauge, its breaker
    assert [p.value for p in otel.metrics()[BREAKER_OPEN]] == [0]


@pytest.mark.parametrize(
    ("sampler", "argument", "kept"),
    [
        (None, None, "ApplicationInsightsSampler1.0"),  # no app setting (a local run): every span
        ("microsoft.fixed_percentage", "0.10", "ApplicationInsightsSampler0.1"),  # the template's default
        ("microsoft.fixed_percentage", "ten", "ApplicationInsightsSampler1.0"),  # a typo loses no span
        ("microsoft.fixed_percentage", "1.5", "ApplicationInsightsSampler1.0"),
    ],
)
def test_spans_are_sampled_as_the_app_settings_say_and_a_bad_share_keeps_every_span(
    monkeypatch: pytest.MonkeyPatch, sampler: str | None, argument: str | None, kept: str
) -> None:
    for name, value in (("OTEL_TRACES_SAMPLER", sampler), ("OTEL_TRACES_SAMPLER_ARG", argument)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    found = sampler_of_the_app_settings()
    assert found is not None
    assert found.get_description() == kept


def test_an_opentelemetry_sampler_name_is_left_to_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    assert sampler_of_the_app_settings() is None
