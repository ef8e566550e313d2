"""The Graph PATCH in telemetry: on the message span (the one span per message; no `requests`
instrumentation), a `graphResponse` line per retried attempt, and the response, latency and wait
metrics, over loopback against the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from devstack.graph_simulator import GraphSimulator
from shared.contract.errors import TransientError
from shared.graph.breaker import CircuitBreaker
from shared.graph.client import ClientLimits, GraphClient
from shared.graph.pacing import WritePacer
from shared.pipeline import CertStatePipeline, Delivery
from shared.telemetry import GRAPH_DURATION, GRAPH_RESPONSES, MESSAGE_SPAN, RETRY_AFTER_CAPPED, WAITS
from tests.support.otel import Captured, capture
from tests.support.pipeline_fakes import SEEDED_MESSAGE as MESSAGE
from tests.support.pipeline_fakes import home_only


@pytest.fixture
def otel() -> Iterator[Captured]:
    with capture() as captured:
        yield captured


def run(otel: Captured, graph: GraphSimulator, credential) -> None:
    telemetry = otel.telemetry
    client = GraphClient(
        session=requests.Session(),
        scope=f"{graph.origin}/.default",
        breaker=CircuitBreaker(threshold=5, cooldown_seconds=10, max_cooldown_seconds=40, probe_timeout_seconds=5),
        limits=ClientLimits(connect_timeout=2, read_timeout=5, max_attempts=3, max_wait_seconds=5, slot_wait_seconds=5),
        telemetry=telemetry,
    )
    tenants = home_only(credential, WritePacer(1000, 1.0, on_wait=telemetry.waited))
    pipeline = CertStatePipeline(
        graph=client, tenants=tenants, graph_base_url=graph.base_url, max_dequeue_count=5, telemetry=telemetry
    )
    outcome = pipeline.handle(json.dumps(MESSAGE).encode(), Delivery("m-1", 1))
    assert outcome is not None
    assert outcome.outcome.status.value == "succeeded"


def test_the_message_span_carries_the_final_answer_and_a_retried_attempt_is_a_warning_line(otel, graph, credential):
    graph.configure(script=[{"status": 429, "retryAfter": "0.2"}])
    run(otel, graph, credential)
    (message,) = otel.spans()  # the only span: no child per HTTP call
    attributes = dict(message.attributes or {})
    assert (message.name, attributes["httpStatus"], attributes["attempts"]) == (MESSAGE_SPAN, 200, 2)
    assert attributes["requestId"]
    answers = [(e["event"], e["httpStatus"], e["action"]) for e in otel.log_events() if e["event"] == "graphResponse"]
    assert answers == [("graphResponse", 429, "retry")]  # the final 200 is the outcome line's to say


def test_graph_answers_latency_and_the_retry_after_wait_are_metrics(otel, graph, credential):
    graph.configure(script=[{"status": 429, "retryAfter": "0.2"}])
    run(otel, graph, credential)
    found = otel.metrics()
    responses = {(p.attributes["statusClass"], p.attributes["httpStatus"]): p.value for p in found[GRAPH_RESPONSES]}
    assert responses == {("4xx", "429"): 1, ("2xx", "200"): 1}
    latency = {p.attributes["statusClass"]: p.count for p in found[GRAPH_DURATION]}
    assert latency == {"4xx": 1, "2xx": 1}
    (retry_after,) = [p for p in found[WAITS] if p.attributes == {"reason": "retryAfter"}]
    assert retry_after.count == 1
    assert 150 <= retry_after.value <= 1000  # milliseconds: the 0.2 s Retry-After, as the pacer measured it


def test_no_answer_is_its_own_status_class(otel, graph, credential):
    graph.configure(script=[{"drop": True}])
    run(otel, graph, credential)
    responses = {(p.attributes["statusClass"], p.attributes["httpStatus"]) for p in otel.metrics()[GRAPH_RESPONSES]}
    assert responses == {("none", "none"), ("2xx", "200")}
    assert otel.total(WAITS, reason="backoff") > 0


def test_a_capped_retry_after_is_counted(otel, graph, credential):
    graph.configure(script=[{"status": 429, "retryAfter": "3600"}])
    with pytest.raises(TransientError):  # no slot within this delivery's budget, and nowhere to defer to here
        run(otel, graph, credential)
    assert otel.total(RETRY_AFTER_CAPPED, httpStatus="429") == 1
