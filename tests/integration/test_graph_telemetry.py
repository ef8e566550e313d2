"""The Graph PATCH in telemetry: a child span per HTTP call (the `requests` instrumentation the
distro enables), and the response, latency and wait metrics, over loopback against the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.trace import SpanKind

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
        instrumentor = RequestsInstrumentor()
        instrumentor.instrument(tracer_provider=captured.tracer_provider)
        try:
            yield captured
        finally:
            instrumentor.uninstrument()


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


def test_each_patch_is_a_client_span_under_the_message_span(otel, graph, credential):
    graph.configure(script=[{"status": 429, "retryAfter": "0.2"}])
    run(otel, graph, credential)
    (message,) = otel.spans(MESSAGE_SPAN)
    clients = [s for s in otel.spans() if s.kind is SpanKind.CLIENT]
    patches = [s for s in clients if (s.attributes or {}).get("http.method") == "PATCH"]
    assert [(s.attributes or {}).get("http.status_code") for s in patches] == [429, 200]
    assert message.context is not None
    for span in patches:
        assert span.parent is not None
        assert span.parent.span_id == message.context.span_id
        assert span.context is not None
        assert span.context.trace_id == message.context.trace_id


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
