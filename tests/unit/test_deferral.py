"""Riding out outages: the breaker, the deferral envelope, and the pipeline putting a message back."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import wiring
from shared.contract.envelope import ENVELOPE_KEY, DeferralRecord, Envelope, deferral_token, unwrap, wrap
from shared.contract.errors import DeferralReason, DeferralRequested, ErrorCode, MessageRejected, TransientError
from shared.contract.outcomes import Outcome, Result, Status
from shared.graph.breaker import CircuitBreaker
from shared.graph.budget import BudgetStore, lookout_of
from shared.host_config import queue_options
from shared.pipeline import CertStatePipeline, Delivery
from shared.settings import Settings
from shared.wiring import build_budget_store, build_deferrals, build_pipeline
from tests.support.deferral_fakes import MemoryDeferrals
from tests.support.pipeline_fakes import NOW, NamedCredential, RecordingGraph, body, directory


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
    with pytest.raises(DeferralRequested) as held:
        b.admit()
    assert held.value.reason == DeferralReason.BREAKER_OPEN
    assert held.value.cause is ErrorCode.CREDENTIAL_UNAVAILABLE
    assert 10 <= held.value.delay_seconds <= 12  # the cool-down, plus up to a fifth of jitter


def test_after_the_cooldown_exactly_one_caller_probes():
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.failed(ErrorCode.GRAPH_UNAVAILABLE)
    clock.now += 10
    b.admit()  # the probe
    with pytest.raises(DeferralRequested) as others:
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
            except DeferralRequested:
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

TOKEN = "tok-" + "x" * 28
DAY = "20261127"  # NOW's day: where a message enqueued at NOW keeps its record


def test_the_envelope_round_trips_identity_and_the_document_unchanged():
    document = json.loads(body())
    envelope = Envelope("0f2c-msg", 3, TOKEN, "20261201", ("a capped Retry-After",))
    inner, read = unwrap(json.loads(wrap(document, envelope)))
    assert inner == document
    assert list(inner) == list(document)  # key order too
    assert read == envelope


WIRE = {"messageId": "m", "deferral": 1, "token": TOKEN, "day": DAY}


@pytest.mark.parametrize(
    "envelope",
    [
        {ENVELOPE_KEY: {}, "message": {}},
        {ENVELOPE_KEY: [], "message": {}},
        {ENVELOPE_KEY: {**WIRE, "messageId": "x\n"}, "message": {}},
        {ENVELOPE_KEY: {**WIRE, "deferral": "1"}, "message": {}},
        {ENVELOPE_KEY: {**WIRE, "deferral": 0}, "message": {}},
        {ENVELOPE_KEY: {**WIRE, "deferral": 10**30}, "message": {}},
        {ENVELOPE_KEY: {**WIRE, "token": "short"}, "message": {}},
        {ENVELOPE_KEY: {**WIRE, "day": "2026-11-27"}, "message": {}},
        {ENVELOPE_KEY: {**WIRE, "deferredSince": "9999-12-31T23:59:59-00:01"}, "message": {}},
        {ENVELOPE_KEY: WIRE, "message": "not an object"},
        {ENVELOPE_KEY: WIRE, "message": {}, "extra": 1},
    ],
)  # fmt: skip
def test_a_malformed_envelope_is_a_malformed_message(envelope: dict[str, Any]):
    with pytest.raises(MessageRejected) as rejected:
        unwrap(envelope)
    assert rejected.value.code is ErrorCode.MALFORMED_MESSAGE
    assert ENVELOPE_KEY in rejected.value.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
    | st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
FIELDS = st.fixed_dictionaries(
    {}, optional=dict.fromkeys((*WIRE, "warnings", "deferredSince", "failedDeliveries", "deferrals"), JSON)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=FIELDS, overrides=st.fixed_dictionaries({}, optional={k: st.just(v) for k, v in WIRE.items()}))
def test_any_value_in_an_envelope_ends_in_one_rejected_outcome(fields: dict[str, Any], overrides: dict[str, Any]):
    """Whatever an envelope holds (dates past year 9999, in the future, wrong types), one outcome, never a raise."""
    text = json.dumps({ENVELOPE_KEY: {**fields, **overrides}, "message": json.loads(body())})
    store, graph = MemoryDeferrals(), RecordingGraph()
    handler = CertStatePipeline(graph=graph, tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
                                max_dequeue_count=5, requeue=Queue(), deferrals=store, clock=Now())  # fmt: skip
    result = handler.handle(text.encode(), Delivery("forged-copy", 1))
    assert result is not None
    outcome = result.outcome
    assert outcome.status is Status.REJECTED
    assert outcome.error is not None
    assert outcome.error.code in {"malformedMessage", "unknownDeferral"}
    assert (outcome.message_id, outcome.correlation_id) == ("forged-copy", "forged-copy")
    assert graph.requests == []
    assert store.rows == {}


# ---- the pipeline ----------------------------------------------------------------------------------


class Queue:
    """The input queue as the pipeline sees it: what was put back, and with which delay.

    `lands_then_fails`: the send takes effect and still raises (a read timeout after the write);
    `meanwhile` runs before it raises (another delivery taking the copy at once).
    """

    def __init__(self, *, fail: bool = False, lands_then_fails: bool = False) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail = fail
        self.lands_then_fails = lands_then_fails
        self.meanwhile: Callable[[str], object] | None = None

    def __call__(self, text: str, delay: int) -> None:
        if self.fail:
            raise ConnectionError("storage unreachable")
        self.sent.append((text, delay))
        if self.lands_then_fails:
            if self.meanwhile is not None:
                self.meanwhile(text)
            raise TimeoutError("read timed out")

    def copy(self) -> bytes:
        """The last copy put back."""
        return self.sent[-1][0].encode()


class Now:
    def __init__(self) -> None:
        self.value = NOW

    def __call__(self) -> datetime:
        return self.value


def pipeline(graph: RecordingGraph, queue: Queue, now: Now, store: MemoryDeferrals | None = None,
             **kwargs: Any) -> CertStatePipeline:  # fmt: skip
    return CertStatePipeline(
        graph=graph,
        tenants=directory(),
        graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5,
        requeue=queue,
        deferrals=store if store is not None else MemoryDeferrals(),
        max_deferral_seconds=600,
        clock=now,
        **kwargs,
    )


def outage(delay: float = 30.0) -> DeferralRequested:
    return DeferralRequested(delay, DeferralReason.BREAKER_OPEN, ErrorCode.GRAPH_UNAVAILABLE)


def reported(result: Result | None) -> Outcome:
    assert isinstance(result, Result), "no outcome"
    return result.outcome


def code(outcome: Outcome) -> str | None:
    return outcome.error.code if outcome.error else None


def test_a_deferred_message_is_recorded_then_goes_back_with_its_identity_and_no_outcome():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    graph = RecordingGraph(outage(29.2))
    assert pipeline(graph, queue, now, store).handle(body(), Delivery("original-id", 2)) is None
    [(text, delay)] = queue.sent
    assert delay == 30  # whole seconds, rounded up
    inner, envelope = unwrap(json.loads(text))
    assert inner == json.loads(body())
    record = store.only()
    assert envelope == Envelope("original-id", 1, record.token, DAY)
    assert (record.message_id, record.deferral, record.since, record.failed_deliveries) == ("original-id", 1, NOW, 1)
    assert (record.written_by, record.claimed_by) == ("original-id", "")
    assert store.calls == ["find", "save"]  # a redelivered original looks for its record first


def test_a_first_delivery_costs_no_table_call_unless_it_is_deferred():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    assert (
        reported(pipeline(RecordingGraph(), queue, now, store).handle(body(), Delivery("m", 1))).status
        is Status.SUCCEEDED
    )
    assert store.calls == []
    assert pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("m2", 1)) is None
    assert store.calls == ["save"]


def test_the_copy_reports_under_the_original_id_and_counts_every_real_delivery():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    assert pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 2)) is None
    now.value += timedelta(seconds=30)
    outcome = reported(pipeline(RecordingGraph(), queue, now, store).handle(queue.copy(), Delivery("copy-id", 1)))
    assert (outcome.status, outcome.message_id, outcome.dequeue_count) == (Status.SUCCEEDED, "original-id", 2)
    assert outcome.correlation_id == "order-4711"
    assert store.only().claimed_by == "copy-id"
    assert len(queue.sent) == 1


def test_deferring_again_keeps_the_recorded_first_deferral_time_and_counts_deferrals():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    first = store.only()
    now.value += timedelta(seconds=100)
    assert pipeline(RecordingGraph(outage()), queue, now, store).handle(queue.copy(), Delivery("copy", 1)) is None
    second = store.only()
    assert (second.deferral, second.since, second.written_by, second.claimed_by) == (2, NOW, "copy", "")
    assert (second.key, second.token) == (first.key, deferral_token(first.key, "original-id", 2))
    assert second.token != first.token
    assert unwrap(json.loads(queue.sent[-1][0]))[1] == Envelope("original-id", 2, second.token, DAY)


def test_a_message_that_has_waited_too_long_by_its_record_fails_with_the_outages_code():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    now.value += timedelta(seconds=590)
    outcome = reported(pipeline(RecordingGraph(outage(30)), queue, now, store).handle(queue.copy(), Delivery("c", 1)))
    assert outcome.status is Status.FAILED
    assert code(outcome) == ErrorCode.GRAPH_UNAVAILABLE
    assert outcome.error is not None
    assert "DEFERRAL_MAX_SECONDS" in outcome.error.message
    assert outcome.request == json.loads(body())  # replayable
    assert outcome.message_id == "original-id"
    assert len(queue.sent) == 1


def test_a_message_whose_expiry_comes_first_is_expired_not_deferred():
    queue, now = Queue(), Now()
    expires = (NOW + timedelta(seconds=10)).isoformat()
    outcome = reported(
        pipeline(RecordingGraph(outage(30)), queue, now).handle(body(expiresAt=expires), Delivery("m", 1))
    )
    assert outcome.status is Status.EXPIRED
    assert queue.sent == []


@pytest.mark.parametrize("dequeue_count", [1, 5])
def test_when_the_queue_refuses_the_copy_the_hosts_retry_still_holds(dequeue_count: int):
    queue, now, store = Queue(fail=True), Now(), MemoryDeferrals()
    handler = pipeline(RecordingGraph(outage()), queue, now, store)
    if dequeue_count < 5:
        with pytest.raises(TransientError):
            handler.handle(body(), Delivery("m", dequeue_count))
    else:  # last delivery: reported, not poisoned
        assert reported(handler.handle(body(), Delivery("m", dequeue_count))).status is Status.FAILED
    assert store.only().claimed_by == "m"  # taken back: a copy that landed after all is a duplicate


def test_a_copy_that_landed_although_its_send_failed_is_a_duplicate_and_the_redelivery_goes_on():
    """Item 2 of issue 17: the send timed out after taking effect; the carrier is redelivered."""
    queue, now, store = Queue(lands_then_fails=True), Now(), MemoryDeferrals()
    with pytest.raises(TransientError):
        pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    graph = RecordingGraph()
    duplicate = reported(pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-id", 1)))
    assert (duplicate.status, code(duplicate)) == (Status.REJECTED, "duplicateDeferral")
    assert (duplicate.message_id, duplicate.correlation_id) == ("copy-id", "copy-id")  # never the real message's
    redelivered = reported(pipeline(graph, queue, now, store).handle(body(), Delivery("original-id", 2)))
    assert (redelivered.status, redelivered.message_id, redelivered.dequeue_count) == (
        Status.SUCCEEDED, "original-id", 2)  # fmt: skip
    assert len(graph.requests) == 1


def test_a_copy_that_takes_over_before_its_carrier_takes_it_back_leaves_the_carrier_no_outcome(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING)
    queue, now, store = Queue(lands_then_fails=True), Now(), MemoryDeferrals()
    graph, outcomes = RecordingGraph(), list[Outcome]()
    queue.meanwhile = lambda text: outcomes.append(
        reported(pipeline(graph, Queue(), now, store).handle(text.encode(), Delivery("copy-id", 1))))  # fmt: skip
    assert pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1)) is None
    assert [(o.status, o.message_id) for o in outcomes] == [(Status.SUCCEEDED, "original-id")]
    assert len(graph.requests) == 1
    assert "deferralSuperseded" in caplog.text
    assert pipeline(graph, queue, now, store).handle(body(), Delivery("original-id", 2)) is None  # and stays so


def test_a_carrier_copy_redelivered_after_an_unknown_send_takes_its_deferral_back_with_its_own_count():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 3))  # 2 failed
    first_copy = queue.copy()
    queue.lands_then_fails = True
    with pytest.raises(TransientError):  # the copy's own deferral: its send timed out
        pipeline(RecordingGraph(outage()), queue, now, store).handle(first_copy, Delivery("copy-1", 1))
    graph = RecordingGraph()
    outcome = reported(pipeline(graph, queue, now, store).handle(first_copy, Delivery("copy-1", 2)))
    assert (outcome.message_id, outcome.dequeue_count) == ("original-id", 4)  # 2 + copy-1's two deliveries
    late = reported(pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-2", 1)))
    assert (late.message_id, code(late)) == ("copy-2", "duplicateDeferral")
    assert len(graph.requests) == 1


def test_a_stale_copy_of_an_earlier_deferral_is_a_duplicate_and_a_later_one_is_unknown():
    queue, now, store = Queue(lands_then_fails=True), Now(), MemoryDeferrals()
    with pytest.raises(TransientError):  # the first copy landed, its send timed out
        pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    stale = queue.copy()
    queue.lands_then_fails = False
    assert pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 2)) is None
    graph = RecordingGraph()
    outcome = reported(pipeline(graph, queue, now, store).handle(stale, Delivery("stale-copy", 1)))
    assert (outcome.message_id, code(outcome)) == ("stale-copy", "duplicateDeferral")
    key = store.only().key
    ahead = wrap(json.loads(body()), Envelope("original-id", 3, deferral_token(key + "x", "original-id", 3), DAY))
    outcome = reported(pipeline(graph, queue, now, store).handle(ahead.encode(), Delivery("forged", 1)))
    assert (outcome.message_id, code(outcome)) == ("forged", "unknownDeferral")
    current = reported(pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-2", 1)))
    assert (current.status, current.message_id, current.dequeue_count) == (Status.SUCCEEDED, "original-id", 2)
    assert len(graph.requests) == 1


def test_the_same_copy_delivered_twice_patches_once():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    graph = RecordingGraph()
    first = reported(pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-a", 1)))
    second = reported(pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-b", 1)))
    assert (first.status, first.message_id) == (Status.SUCCEEDED, "original-id")
    assert (second.status, second.message_id, code(second)) == (Status.REJECTED, "copy-b", "duplicateDeferral")
    assert len(graph.requests) == 1


def test_a_host_redelivery_of_the_copy_that_holds_the_deferral_goes_on():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    throttled = TransientError(code=ErrorCode.GRAPH_UNAVAILABLE, message="503")
    with pytest.raises(TransientError):
        pipeline(RecordingGraph(throttled), queue, now, store).handle(queue.copy(), Delivery("copy", 1))
    outcome = reported(pipeline(RecordingGraph(), queue, now, store).handle(queue.copy(), Delivery("copy", 2)))
    assert (outcome.status, outcome.message_id, outcome.dequeue_count) == (Status.SUCCEEDED, "original-id", 2)


def test_an_original_redelivered_after_its_record_was_written_but_no_copy_sent_goes_on():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    store.rows[("original-id", DAY)] = DeferralRecord("original-id", NOW, NOW, 1, TOKEN, 0, "original-id", 0, "", "e")
    outcome = reported(pipeline(RecordingGraph(), queue, now, store).handle(body(), Delivery("original-id", 2)))
    assert (outcome.status, outcome.message_id, outcome.dequeue_count) == (Status.SUCCEEDED, "original-id", 2)
    assert store.only().claimed_by == "original-id"


def forged(message_id: str = "victim-id", token: str = TOKEN, **document: Any) -> bytes:
    return wrap(json.loads(body(**document)), Envelope(message_id, 1, token, DAY)).encode()


def test_a_forged_envelope_with_no_record_is_rejected_under_its_own_id_and_never_sent():
    queue, now, store, graph = Queue(), Now(), MemoryDeferrals(), RecordingGraph()
    outcome = reported(pipeline(graph, queue, now, store).handle(forged(), Delivery("forger-id", 1)))
    assert (outcome.status, code(outcome)) == (Status.REJECTED, "unknownDeferral")
    assert (outcome.message_id, outcome.correlation_id, outcome.dequeue_count) == ("forger-id", "forger-id", 1)
    assert outcome.target.device_configuration_id is None  # nothing from inside an envelope no record vouches for
    assert graph.requests == []
    assert store.rows == {}


def test_an_envelope_naming_another_messages_record_with_a_wrong_token_changes_nothing():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("victim-id", 1))
    before = store.only()
    graph = RecordingGraph()
    outcome = reported(pipeline(graph, queue, now, store).handle(forged(token="y" * 32), Delivery("forger-id", 1)))
    assert (outcome.message_id, code(outcome)) == ("forger-id", "unknownDeferral")
    assert store.only() == before
    assert graph.requests == []
    real = reported(pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-id", 1)))
    assert (real.status, real.message_id) == (Status.SUCCEEDED, "victim-id")


def test_a_table_that_is_down_while_a_copy_is_checked_retries_then_fails_under_the_copys_own_id():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    store.failing = ConnectionError("table down")
    graph = RecordingGraph()
    with pytest.raises(TransientError) as retried:
        pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-id", 1))
    assert retried.value.code is ErrorCode.DEFERRAL_UNAVAILABLE
    last = reported(pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-id", 5)))
    assert (last.status, code(last), last.message_id, last.correlation_id) == (
        Status.FAILED, "deferralUnavailable", "copy-id", "copy-id")  # fmt: skip
    assert last.request == json.loads(queue.copy())  # the copy as it was: the record it names may still hold it
    assert graph.requests == []


def test_a_redelivered_original_that_cannot_read_its_record_is_retried_then_applied_on_its_last_delivery():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    store.failing = ConnectionError("table down")
    graph = RecordingGraph()
    with pytest.raises(TransientError) as retried:
        pipeline(graph, queue, now, store).handle(body(), Delivery("original-id", 2))
    assert retried.value.code is ErrorCode.DEFERRAL_UNAVAILABLE
    assert graph.requests == []
    last = reported(pipeline(graph, queue, now, store).handle(body(), Delivery("original-id", 5)))
    assert (last.status, last.message_id, last.dequeue_count) == (Status.SUCCEEDED, "original-id", 5)


def test_when_the_record_cannot_be_written_nothing_is_sent_and_the_hosts_retry_holds():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    store.failing = ConnectionError("table down")
    with pytest.raises(TransientError) as retried:
        pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("m", 1))
    assert retried.value.code is ErrorCode.GRAPH_UNAVAILABLE
    assert queue.sent == []


def test_a_message_too_large_to_wrap_falls_back_to_the_hosts_retry():
    queue, now = Queue(), Now()
    size = len(body(correlationId="big", update={"certificateIssuer": ""}))
    big = body(correlationId="big", update={"certificateIssuer": "x" * (64 * 1024 - 60 - size)})
    assert len(big) == 64 * 1024 - 60
    with pytest.raises(TransientError):
        pipeline(RecordingGraph(outage()), queue, now).handle(big, Delivery("m", 1))
    assert queue.sent == []


def test_without_deferral_records_a_deferral_is_a_retry_and_every_envelope_is_unknown():
    now = Now()
    handler = CertStatePipeline(
        graph=RecordingGraph(outage()), tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5, requeue=Queue(), clock=now,
    )  # fmt: skip
    with pytest.raises(TransientError):
        handler.handle(body(), Delivery("m", 1))
    outcome = reported(handler.handle(forged(), Delivery("forger-id", 1)))
    assert (outcome.message_id, code(outcome)) == ("forger-id", "unknownDeferral")


def test_a_record_outside_the_envelopes_day_is_not_found():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    _, envelope = unwrap(json.loads(queue.copy()))
    assert envelope is not None
    moved = wrap(json.loads(body()), replace(envelope, day="20261128")).encode()
    outcome = reported(pipeline(RecordingGraph(), queue, now, store).handle(moved, Delivery("copy-id", 1)))
    assert (outcome.message_id, code(outcome)) == ("copy-id", "unknownDeferral")


def test_a_held_copy_logs_as_its_message_and_no_log_line_carries_a_deferral_token(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    pipeline(RecordingGraph(outage()), queue, now, store).handle(body(), Delivery("original-id", 1))
    reported(pipeline(RecordingGraph(), queue, now, store).handle(queue.copy(), Delivery("copy-id", 1)))
    events = {e["event"]: e for e in (json.loads(r.getMessage()) for r in caplog.records if r.name == "certstate")}
    assert (events["deferred"]["messageId"], events["outcome"]["messageId"]) == ("original-id", "original-id")
    record = store.only()
    assert record.key not in caplog.text
    assert deferral_token(record.key, "original-id", 1) not in caplog.text


ACCOUNT = "AccountName=a;AccountKey=a2V5;QueueEndpoint=http://127.0.0.1:1/a;"


@pytest.mark.parametrize(
    ("app_settings", "kept"),
    [
        ({"AzureWebJobsStorage": ACCOUNT}, False),  # a queue-only connection: nowhere to keep records
        ({"AzureWebJobsStorage": ACCOUNT + "TableEndpoint=http://127.0.0.1:2/a;", "AUDIT_TABLE_NAME": ""}, False),
        ({"AzureWebJobsStorage": ACCOUNT + "TableEndpoint=http://127.0.0.1:2/a;"}, True),
    ],
)
def test_deferral_records_are_kept_only_in_an_audit_table_and_built_without_a_request(
    app_settings: dict[str, str], kept: bool
):

    settings = Settings(**app_settings)
    assert (build_deferrals(settings) is not None) is kept
    built = build_pipeline(settings, queue_options(app_settings={}), credential=NamedCredential("home"))
    text = forged()
    if kept:  # the table named (nothing answers on port 2): a copy cannot be checked yet, so it comes back
        with pytest.raises(TransientError) as retried:
            built.handle(text, Delivery("copy", 1))
        assert retried.value.code is ErrorCode.DEFERRAL_UNAVAILABLE
    else:
        assert code(reported(built.handle(text, Delivery("copy", 1)))) == "unknownDeferral"


def test_table_failures_only_copies_records_met_count_for_the_process_s_pacers(monkeypatch: pytest.MonkeyPatch):
    """The copy waits on its record before it paces: the pacers here sent nothing while the table was out."""
    settings = Settings(AzureWebJobsStorage=ACCOUNT + "TableEndpoint=http://127.0.0.1:2/a;")
    stores: list[BudgetStore | None] = []

    def kept(settings: Settings) -> BudgetStore | None:
        stores.append(build_budget_store(settings))
        return stores[-1]

    monkeypatch.setattr(wiring, "build_budget_store", kept)
    built = build_pipeline(settings, queue_options(app_settings={}), credential=NamedCredential("home"))
    assert stores[0] is not None
    lookout = lookout_of(stores[0])
    with pytest.raises(TransientError):
        built.handle(forged(), Delivery("copy", 1))  # nothing answers on port 2
    assert lookout.outages == 0  # one failure alone may be this process's own (a dropped kept-alive connection)
    with pytest.raises(TransientError):
        built.handle(forged(), Delivery("copy-2", 1))
    assert lookout.outages == 1  # the next claim leaves room for the instances on their split


class BookedGraph(RecordingGraph):
    """Records the booked turn each PATCH is given."""

    def __init__(self, *answers: Any) -> None:
        super().__init__(*answers)
        self.booked: list[float | None] = []

    def patch(self, request: Any, tenant: Any, booked: float | None = None) -> Any:
        self.booked.append(booked)
        return super().patch(request, tenant, booked)


def test_a_copy_s_booked_turn_comes_from_its_record_and_reaches_the_graph_client_wherever_it_lands():
    queue, now, store = Queue(), Now(), MemoryDeferrals()
    throttled = DeferralRequested(3.0, DeferralReason.WRITE_BUDGET, ErrorCode.GRAPH_THROTTLED, (), 1_700_000_004.5)
    assert pipeline(RecordingGraph(throttled), queue, now, store).handle(body(), Delivery("original-id", 1)) is None
    assert store.only().slot == 1_700_000_004.5  # kept in the record, the only thing a copy is trusted by
    assert "1700000004" not in queue.sent[-1][0]  # and not in the envelope anyone could write
    graph = BookedGraph()
    outcome = reported(pipeline(graph, queue, now, store).handle(queue.copy(), Delivery("copy-id", 1)))
    assert outcome.status is Status.SUCCEEDED
    assert graph.booked == [1_700_000_004.5]
    fresh = BookedGraph()
    reported(pipeline(fresh, queue, now, store).handle(body(), Delivery("another", 1)))
    assert fresh.booked == [None]  # an original has no turn
