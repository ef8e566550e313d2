"""Riding out outages: the breaker, the deferral envelope, and the pipeline putting a message back."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contract.envelope import ENVELOPE_KEY, DeferralRecord, unwrap, wrap
from shared.contract.errors import Deferred, ErrorCode, MessageRejected, TransientError
from shared.contract.outcomes import Status
from shared.graph.breaker import BREAKER_OPEN, CircuitBreaker
from shared.pipeline import CertStatePipeline, Delivery, Result
from tests.support.pipeline_fakes import NOW, RecordingGraph, body, directory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(
        threshold=threshold,
        cooldown_seconds=10,
        max_cooldown_seconds=40,
        probe_timeout_seconds=5,
        clock=clock,
        rng=random.Random(1),
    )


# ---- the breaker ----------------------------------------------------------------------------------


def test_the_breaker_opens_after_consecutive_failures_only():
    clock = Clock()
    b = breaker(clock)
    b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    b.succeeded()  # an answer in between: the count starts again
    b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    b.admit()
    b.failed(ErrorCode.CREDENTIAL_UNAVAILABLE)
    with pytest.raises(Deferred) as held:
        b.admit()
    assert held.value.reason == BREAKER_OPEN
    assert held.value.cause is ErrorCode.CREDENTIAL_UNAVAILABLE
    assert 10 <= held.value.delay_seconds <= 12  # the cool-down, plus up to a fifth of jitter


def test_after_the_cooldown_exactly_one_caller_probes():
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    clock.now += 10
    b.admit()  # the probe
    with pytest.raises(Deferred) as others:
        b.admit()
    assert 10 <= others.value.delay_seconds <= 12  # come back a cool-down later, when the probe has answered
    b.succeeded()
    b.admit()
    b.admit()  # closed again: everyone goes


def test_failed_probes_double_the_cooldown_up_to_the_cap():
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    cooldowns = []
    for _ in range(4):
        opened = clock.now
        while True:
            try:
                b.admit()
                break
            except Deferred:
                clock.now += 1
        cooldowns.append(clock.now - opened)
        b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    assert cooldowns == [10, 20, 40, 40]


def test_a_probe_that_never_reports_back_does_not_hold_the_breaker_for_ever():
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    clock.now += 10
    b.admit()  # a probe whose process died
    clock.now += 5
    b.admit()  # the next caller probes instead


# ---- the envelope -----------------------------------------------------------------------------------


def test_the_envelope_round_trips_identity_and_the_document_unchanged():
    document = json.loads(body())
    since = datetime(2026, 12, 1, 8, 0, 0, 123000, tzinfo=UTC)
    text = wrap(document, DeferralRecord("0f2c-msg", 2, 3, since))
    inner, record = unwrap(json.loads(text))
    assert inner == document
    assert list(inner) == list(document)  # key order too
    assert record == DeferralRecord("0f2c-msg", 2, 3, since)


RECORD = {"messageId": "m", "failedDeliveries": 0, "deferrals": 1, "deferredSince": "2026-12-01T00:00:00Z"}


@pytest.mark.parametrize(
    "envelope",
    [
        {ENVELOPE_KEY: {}, "message": {}},
        {ENVELOPE_KEY: {**RECORD, "messageId": "x\n"}, "message": {}},
        {ENVELOPE_KEY: {**RECORD, "failedDeliveries": "1"}, "message": {}},
        {ENVELOPE_KEY: {**RECORD, "deferrals": 0}, "message": {}},
        {ENVELOPE_KEY: RECORD, "message": "not an object"},
        {ENVELOPE_KEY: RECORD, "message": {}, "extra": 1},
    ],
)  # fmt: skip
def test_a_malformed_envelope_is_a_malformed_message(envelope: dict[str, Any]):
    with pytest.raises(MessageRejected) as rejected:
        unwrap(envelope)
    assert rejected.value.code is ErrorCode.MALFORMED_MESSAGE
    assert ENVELOPE_KEY in rejected.value.message


# ---- the pipeline ----------------------------------------------------------------------------------


class Queue:
    """The input queue as the pipeline sees it: what was put back, and with which delay."""

    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail = fail

    def __call__(self, text: str, delay: int) -> None:
        if self.fail:
            raise ConnectionError("storage unreachable")
        self.sent.append((text, delay))


class Now:
    def __init__(self) -> None:
        self.value = NOW

    def __call__(self) -> datetime:
        return self.value


def pipeline(graph: RecordingGraph, queue: Queue, now: Now, **kwargs: Any) -> CertStatePipeline:
    return CertStatePipeline(
        graph=graph,
        tenants=directory(),
        graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5,
        requeue=queue,
        max_deferral_seconds=600,
        clock=now,
        **kwargs,
    )


def outage(delay: float = 30.0) -> Deferred:
    return Deferred(delay, BREAKER_OPEN, ErrorCode.GRAPH_UNAVAILABLE)


def test_a_deferred_message_goes_back_with_its_identity_and_no_outcome():
    queue, now = Queue(), Now()
    graph = RecordingGraph(outage(29.2))
    assert pipeline(graph, queue, now).handle(body(), Delivery("original-id", 2)) is None
    [(text, delay)] = queue.sent
    assert delay == 30  # whole seconds, rounded up
    inner, record = unwrap(json.loads(text))
    assert inner == json.loads(body())
    assert record == DeferralRecord("original-id", 1, 1, NOW)  # one failed delivery before this one


def test_the_copy_reports_under_the_original_id_and_counts_every_real_delivery():
    queue, now = Queue(), Now()
    text = wrap(json.loads(body()), DeferralRecord("original-id", 1, 1, NOW))
    now.value += timedelta(seconds=30)
    result = pipeline(RecordingGraph(), queue, now).handle(text.encode(), Delivery("copy-id", 1))
    assert isinstance(result, Result)
    outcome = result.outcome
    assert (outcome.status, outcome.message_id, outcome.dequeue_count) == (Status.SUCCEEDED, "original-id", 2)
    assert queue.sent == []


def test_deferring_again_keeps_the_first_deferral_time_and_counts_deferrals():
    queue, now = Queue(), Now()
    since = NOW - timedelta(seconds=100)
    text = wrap(json.loads(body()), DeferralRecord("original-id", 0, 4, since))
    assert pipeline(RecordingGraph(outage()), queue, now).handle(text.encode(), Delivery("copy", 1)) is None
    _, record = unwrap(json.loads(queue.sent[0][0]))
    assert record == DeferralRecord("original-id", 0, 5, since)


def test_a_message_that_has_waited_too_long_fails_with_the_outages_code():
    queue, now = Queue(), Now()
    text = wrap(json.loads(body()), DeferralRecord("original-id", 0, 20, NOW - timedelta(seconds=590)))
    result = pipeline(RecordingGraph(outage(30)), queue, now).handle(text.encode(), Delivery("copy", 1))
    assert isinstance(result, Result)
    outcome = result.outcome
    assert outcome.status is Status.FAILED
    assert outcome.error is not None
    assert outcome.error.code == ErrorCode.GRAPH_UNAVAILABLE
    assert "DEFERRAL_MAX_SECONDS" in outcome.error.message
    assert outcome.request == json.loads(body())  # replayable
    assert outcome.message_id == "original-id"
    assert queue.sent == []


def test_a_message_whose_expiry_comes_first_is_expired_not_deferred():
    queue, now = Queue(), Now()
    expires = (NOW + timedelta(seconds=10)).isoformat()
    result = pipeline(RecordingGraph(outage(30)), queue, now).handle(body(expiresAt=expires), Delivery("m", 1))
    assert isinstance(result, Result)
    outcome = result.outcome
    assert outcome.status is Status.EXPIRED
    assert queue.sent == []


@pytest.mark.parametrize("dequeue_count", [1, 5])
def test_when_the_queue_refuses_the_copy_the_hosts_retry_still_holds(dequeue_count: int):
    queue, now = Queue(fail=True), Now()
    handler = pipeline(RecordingGraph(outage()), queue, now)
    if dequeue_count < 5:
        with pytest.raises(TransientError):
            handler.handle(body(), Delivery("m", dequeue_count))
        return
    result = handler.handle(body(), Delivery("m", dequeue_count))  # last delivery: reported, not poisoned
    assert isinstance(result, Result)
    outcome = result.outcome
    assert outcome.status is Status.FAILED


def test_a_message_too_large_to_wrap_falls_back_to_the_hosts_retry():
    queue, now = Queue(), Now()
    big = body(correlationId="big", update={"certificateIssuer": "x" * (64 * 1024 - 300)})
    assert len(big) < 64 * 1024
    with pytest.raises(TransientError):
        pipeline(RecordingGraph(outage()), queue, now).handle(big, Delivery("m", 1))
    assert queue.sent == []


def test_without_a_queue_to_defer_to_a_deferral_is_a_retry():
    now = Now()
    handler = CertStatePipeline(
        graph=RecordingGraph(outage()), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5, clock=now,
    )  # fmt: skip
    with pytest.raises(TransientError):
        handler.handle(body(), Delivery("m", 1))
