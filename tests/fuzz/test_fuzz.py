"""Fuzzing the one-outcome promise: whatever bytes come in and whatever Graph answers, each delivery
ends in exactly one outcome that fits a queue message, or in one retry where the failure is transient
(or in one deferred copy that fits, during an outage).

Deterministic (derandomized, no example database) and bounded, so CI stays fast and repeatable; set
CERTSTATE_FUZZ_EXAMPLES (e.g. 5000) and CERTSTATE_FUZZ_RANDOM=1 to search further on a workstation.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.queue import QueueClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.azurite import Azurite
from producer.schemas import SCHEMA_DIR
from shared.contract.errors import (
    DeferralReason,
    DeferralRequested,
    ErrorCode,
    GraphRefused,
    GraphTrace,
    TransientError,
)
from shared.contract.limits import QUEUE_MESSAGE_BYTES, outcome_budget
from shared.contract.outcomes import Result
from shared.graph.client import GraphResult
from shared.graph.routes import GraphRequest
from shared.graph.tenancy import Tenant
from shared.pipeline import CertStatePipeline, Delivery
from tests.fuzz.strategies import VALID, queue_bodies, spoiled_document, with_huge_number
from tests.support.deferral_fakes import MemoryDeferrals
from tests.support.pipeline_fakes import directory

MAX_DEQUEUE = 5
FUZZ = settings(
    max_examples=int(os.environ.get("CERTSTATE_FUZZ_EXAMPLES", "300")),
    derandomize=os.environ.get("CERTSTATE_FUZZ_RANDOM") != "1",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
OUTCOME_SCHEMA = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "outcome.schema.json").read_text("utf-8")))
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
"""What must not reach a terminal from an outcome's echoed values (docs/outcomes.md, "Echoed values")."""
CAPPED = "Graph's Retry-After '99999999999999999999' was capped at 60 s: writes resumed before it ran out"


def graph_answers() -> st.SearchStrategy[GraphResult | Exception]:
    """What Graph (through the client) may hand back, echoes and hostile text included."""
    text = (
        st.text(max_size=50) | st.just("bad \ud800 value") | st.just("bad \x1b[2J\u202e value") | st.just("m" * 70_000)
    )
    trace = st.builds(GraphTrace, request_id=st.none() | st.text(max_size=40), client_request_id=st.just("c"))
    return st.one_of(
        st.builds(GraphResult, status=st.sampled_from([200, 204]), trace=trace, attempts=st.integers(1, 4),
                  warnings=st.sampled_from([(), (CAPPED,)])),
        st.builds(GraphRefused, code=st.sampled_from([ErrorCode.GRAPH_NOT_FOUND, ErrorCode.GRAPH_REQUEST_FAILED]),
                  message=text, graph_code=st.none() | text, http_status=st.sampled_from([404, 202, 400]),
                  trace=trace, attempts=st.just(1)),
        st.builds(TransientError, code=st.just(ErrorCode.GRAPH_THROTTLED), message=text, http_status=st.just(429),
                  trace=trace, attempts=st.integers(0, 4), warnings=st.sampled_from([(), (CAPPED,)])),
        st.builds(DeferralRequested, delay_seconds=st.floats(1, 600), reason=st.just(DeferralReason.BREAKER_OPEN)),
        st.just(ZeroDivisionError("a bug")),
    )  # fmt: skip


class OneAnswer:
    def __init__(self, answer: GraphResult | Exception) -> None:
        self.answer = answer
        self.requests: list[GraphRequest] = []

    def patch(self, request: GraphRequest, tenant: Tenant, booked: float | None = None) -> GraphResult:
        self.requests.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def deliver(raw: bytes, answer: GraphResult | Exception, dequeue_count: int, encoding: str) -> Result | None:
    """One delivery; None when it asked for a retry or was deferred. Fails the test on anything else."""
    graph = OneAnswer(answer)
    copies: list[str] = []
    pipeline = CertStatePipeline(graph=graph, tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
                                 max_dequeue_count=MAX_DEQUEUE, outcome_budget=outcome_budget(encoding),
                                 requeue=lambda text, _delay: copies.append(text), deferrals=MemoryDeferrals(),
                                 clock=lambda: datetime(2026, 11, 27, tzinfo=UTC))  # fmt: skip
    delivery = Delivery(message_id="fuzz-message", dequeue_count=dequeue_count)
    try:
        result = pipeline.handle(raw, delivery)
    except (TransientError, ZeroDivisionError):
        assert dequeue_count < MAX_DEQUEUE, "a retry on the last delivery: the message would be poisoned"
        assert graph.requests, "only a Graph (or bug) failure may be retried, never the message itself"
        return None
    if result is None:  # deferred: one delayed copy on the input queue, and no outcome
        assert isinstance(answer, DeferralRequested)
        assert len(copies) == 1
        assert len(copies[0].encode("utf-8")) <= QUEUE_MESSAGE_BYTES
        return None
    assert len(graph.requests) <= 1
    assert_fits(result, encoding)
    return result


def assert_fits(result: Result, encoding: str) -> dict[str, Any]:
    """The output binding's limit, as the queue stores the text, and the committed schema."""
    stored = result.text.encode("utf-8")  # raises on a lone surrogate
    if encoding == "base64":
        stored = base64.b64encode(stored)
    assert len(stored) <= QUEUE_MESSAGE_BYTES
    document: dict[str, Any] = json.loads(result.text)
    OUTCOME_SCHEMA.validate(document)
    assert document["messageId"] == "fuzz-message"
    assert document == json.loads(result.outcome.to_json()) or document["truncated"] == ["*"]
    return document


@FUZZ
@given(raw=queue_bodies, answer=graph_answers(), dequeue_count=st.integers(1, MAX_DEQUEUE + 1),
       encoding=st.sampled_from(["none", "base64"]))  # fmt: skip
def test_every_delivery_ends_in_one_outcome_that_fits_or_one_retry(raw, answer, dequeue_count, encoding):
    result = deliver(raw, answer, dequeue_count, encoding)
    if result is not None and result.outcome.status.value in {"rejected"}:
        assert result.outcome.error is not None
        assert result.outcome.error.code in {"malformedMessage", "validationFailed"}


@FUZZ
@given(document=spoiled_document())
def test_no_bad_value_is_echoed_in_full_and_none_twice(document):
    result = deliver(json.dumps(document).encode(), GraphResult(200, GraphTrace(), 1), 1, "none")
    assert result is not None
    for value in _strings(document):
        if len(value) > 64 and result.outcome.status.value == "rejected":
            assert json.dumps(value)[1:-1] not in result.text  # an excerpt at most, never the value


@FUZZ
@given(document=spoiled_document(), answer=graph_answers())
def test_no_control_character_is_echoed_raw(document, answer):
    result = deliver(json.dumps(document).encode(), answer, MAX_DEQUEUE, "none")
    if result is not None:
        echoed = {k: v for k, v in json.loads(result.text).items() if k not in {"request", "graphRequest"}}
        assert [s for s in _strings(echoed) if UNSAFE.search(s)] == []


@FUZZ
@given(raw=with_huge_number())
def test_a_number_python_cannot_hold_is_never_retried(raw):
    result = deliver(raw, GraphResult(200, GraphTrace(), 1), 1, "none")
    assert result is not None  # an outcome on the first delivery, never a retry


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# ---- against Azurite: it refuses more than 64 KiB, as Azure does -----------------------------------


def worst_cases() -> Iterator[tuple[str, bytes, GraphResult | Exception]]:
    """A handful of the largest outcomes the classes above produce, each with the answer that makes it."""
    refused = GraphRefused(code=ErrorCode.GRAPH_NOT_FOUND, message="m" * 70_000, http_status=404, attempts=1)
    last = TransientError(code=ErrorCode.GRAPH_THROTTLED, message="throttled", http_status=429, attempts=4)
    ok = GraphResult(200, GraphTrace("r", "c", None), 1, warnings=(CAPPED,))
    issuer = json.dumps({**VALID, "update": {"certificateIssuer": ""}})
    fill = "é" * ((65_520 - len(issuer)) // 2)  # two bytes each in UTF-8
    big = issuer.replace('"certificateIssuer": ""', '"certificateIssuer": "' + fill + '"')
    yield "failed, near-limit request", big.encode(), refused
    yield "failed on the last delivery, near-limit request", big.encode(), last
    yield "dry run, near-limit body", big.replace('"update"', '"dryRun": true, "update"').encode(), ok
    yield "60,000-character enum value", json.dumps({**VALID, "update": {"devicePlatform": "p" * 60_000}}).encode(), ok
    yield "3,000 unknown properties", json.dumps({**VALID, "update": {f"k{i}": 1 for i in range(3_000)}}).encode(), ok
    yield (
        "control characters",
        json.dumps({**VALID, "update": {f"k{i}\x1b": "\x9b" for i in range(2_000)}}).encode(),
        ok,
    )
    yield "lone surrogate", json.dumps({**VALID, "profileType": "\ud800" * 9_000}).encode(), ok
    yield "5,000-digit integer", b'{"profileType": ' + b"9" * 5_000 + b"}", ok


@pytest.fixture
def result_queue(azurite: Azurite, queue_names) -> Iterator[QueueClient]:
    with QueueClient.from_connection_string(azurite.connection_string, queue_names("results")) as queue:
        queue.create_queue()
        yield queue


@pytest.mark.parametrize(("case", "raw", "answer"), list(worst_cases()), ids=[c for c, _, _ in worst_cases()])
def test_the_worst_outcomes_are_accepted_by_azurite_as_written(result_queue: QueueClient, case, raw, answer):
    result = deliver(raw, answer, MAX_DEQUEUE, "none")
    assert result is not None, case
    result_queue.send_message(result.text)  # raw text, as the output binding writes with messageEncoding none
    (stored,) = result_queue.receive_messages(max_messages=1)
    assert stored.content == result.text


def test_azurite_does_refuse_one_byte_more_than_a_queue_message(result_queue: QueueClient):
    result_queue.send_message("x" * QUEUE_MESSAGE_BYTES)
    with pytest.raises(HttpResponseError):
        result_queue.send_message("x" * (QUEUE_MESSAGE_BYTES + 1))
