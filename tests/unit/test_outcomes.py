"""Every outcome fits one queue message and serializes, whatever it echoes (docs/outcomes.md, "Size")."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.contract.echo import bounded
from shared.contract.errors import DeferralReason, DeferralRequested, ErrorCode, GraphRefused, GraphTrace
from shared.contract.limits import QUEUE_MESSAGE_BYTES, outcome_budget
from shared.contract.outcomes import ErrorDetail, Outcome, OutcomeError, Status, Target, fit
from shared.pipeline import CertStatePipeline, Delivery
from tests.support.deferral_fakes import MemoryDeferrals
from tests.support.pipeline_fakes import SEEDED_MESSAGE, RecordingGraph, directory

NOW = datetime(2026, 11, 27, 14, 3, 11, 402000, tzinfo=UTC)


def outcome(status: Status = Status.FAILED, **fields: Any) -> Outcome:
    defaults = {"target": Target(profile_type="iosScepCertificateProfile"), "duration_ms": 3, "completed_at": NOW}
    return Outcome(status=status, correlation_id="order-4711", message_id="m-1", dequeue_count=1,
                   **{**defaults, **fields})  # fmt: skip


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def test_an_outcome_that_fits_is_returned_unchanged():
    small = outcome(error=OutcomeError(code="graphNotFound", message="nope"), request={"a": "b"})
    fitted, text = fit(small, QUEUE_MESSAGE_BYTES)
    assert fitted is small
    assert text == small.to_json()
    assert json.loads(text)["truncated"] == []


def test_a_failed_outcome_whose_request_does_not_fit_names_its_size_and_hash():
    request = {"update": {"certificateIssuer": "é" * 40_000}}  # 80 KB of UTF-8
    compact = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()  # as the producer sends it
    big = outcome(error=OutcomeError(code="graphNotFound", message="nope"), request=request)
    fitted, text = fit(big, QUEUE_MESSAGE_BYTES)
    wire = json.loads(text)
    assert size(text) <= QUEUE_MESSAGE_BYTES
    assert wire["request"] is None
    assert wire["requestOmitted"] == {"bytes": len(compact), "sha256": hashlib.sha256(compact).hexdigest()}
    assert wire["truncated"] == ["request"]
    assert (wire["status"], wire["error"]["code"]) == ("failed", "graphNotFound")
    assert fitted.request_omitted is not None


def test_a_dry_run_body_that_does_not_fit_is_cut_but_the_request_line_stays():
    graph_request = {"method": "PATCH", "url": "https://graph/x", "headers": {}, "body": {"a": "x" * 70_000}}
    _, text = fit(outcome(Status.VALIDATED, graph_request=graph_request), QUEUE_MESSAGE_BYTES)
    wire = json.loads(text)
    assert size(text) <= QUEUE_MESSAGE_BYTES
    assert wire["graphRequest"] == {**graph_request, "body": None}
    assert wire["truncated"] == ["graphRequest.body"]


def test_details_are_cut_from_the_end_and_the_cut_is_named():
    details = [ErrorDetail(field=f"update.k{i}", message="unknown property") for i in range(3000)]
    rejected = outcome(Status.REJECTED, error=OutcomeError(code="validationFailed", message="3000", details=details))
    _, text = fit(rejected, QUEUE_MESSAGE_BYTES)
    wire = json.loads(text)
    assert QUEUE_MESSAGE_BYTES - 200 < size(text) <= QUEUE_MESSAGE_BYTES  # as many kept as fit
    assert wire["error"]["details"][0] == {"field": "update.k0", "message": "unknown property"}
    assert wire["truncated"] == ["error.details"]


def test_the_base64_budget_is_three_quarters_of_the_queue_message():
    assert outcome_budget("none") == QUEUE_MESSAGE_BYTES
    assert outcome_budget("base64") == 49_152
    big = outcome(error=OutcomeError(code="graphNotFound", message="nope"), request={"a": "x" * 50_000})
    _, text = fit(big, outcome_budget("base64"))
    assert size(text) <= 49_152
    assert json.loads(text)["truncated"] == ["request"]


def test_ids_nobody_expects_to_be_huge_still_give_an_outcome_that_fits():
    monster = outcome(error=OutcomeError(code="internalError", message="m" * 70_000), warnings=["w" * 70_000])
    monster = monster.model_copy(update={"message_id": "i" * 70_000})
    fitted, text = fit(monster, QUEUE_MESSAGE_BYTES)
    assert size(text) <= QUEUE_MESSAGE_BYTES
    assert fitted.truncated == ["*"]
    assert (fitted.status, fitted.error and fitted.error.code) == (Status.FAILED, "internalError")


@pytest.mark.parametrize("where", ["error.message", "target", "request", "warnings"])
def test_a_lone_surrogate_anywhere_still_serializes_as_utf8(where: str):
    bad = "Graph said \ud800 here"
    cases: dict[str, dict[str, Any]] = {
        "error.message": {"error": OutcomeError(code="graphBadRequest", message=bad)},
        "target": {"target": Target(device_configuration_id=bad)},
        "request": {"request": {"update": {bad: bad}}},
        "warnings": {"warnings": [bad]},
    }
    text = outcome(**cases[where]).to_json()
    text.encode("utf-8")  # would raise on a lone surrogate
    assert "Graph said \\\\ud800 here" in text  # the escape as text, not a JSON escape of a surrogate
    assert json.loads(text)["messageId"] == "m-1"


def test_an_echoed_document_nested_deeper_than_pydantic_writes_still_serializes():
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(400):
        node["a"] = {}
        node = node["a"]
    failed = outcome(error=OutcomeError(code="internalError", message="x"), request=deep)
    _, text = fit(failed, QUEUE_MESSAGE_BYTES)
    wire = json.loads(text)
    assert wire["request"] == deep
    assert wire["error"]["code"] == "internalError"


# ---- issue 17: control characters in echoed values are escaped, never echoed raw -------------------

ESC_SEQUENCE = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"  # set the title, clear the screen, turn red
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")


def unsafe_strings(value: Any, path: str = "") -> list[str]:
    """Where in a decoded outcome a string (or key) holds a character a terminal would act on."""
    if isinstance(value, str):
        return [path] if UNSAFE.search(value) else []
    if isinstance(value, dict):
        found = [f"{path}.{key}" for key in value if UNSAFE.search(key)]
        return found + [p for key, item in value.items() for p in unsafe_strings(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in unsafe_strings(item, f"{path}[{i}]")]
    return []


def pipeline(graph: RecordingGraph | None = None) -> CertStatePipeline:
    return CertStatePipeline(graph=graph or RecordingGraph(), tenants=directory(), max_dequeue_count=5,
                             graph_base_url="https://graph.microsoft.com/beta", clock=lambda: NOW)  # fmt: skip


def test_a_rejected_message_s_control_characters_are_echoed_as_escapes():
    hostile = {
        "correlationId": f"order{ESC_SEQUENCE}",
        "tenantId": f"{ESC_SEQUENCE}72f988bf-86f1-41af-91ab-2d7cd011db47",
        "profileType": "ios\u202eScep\x9b2J",  # a bidi override, an 8-bit CSI
        "deviceConfigurationId": "cfg\r\n\tforged row",
        "managedDeviceCertificateStateId": "state-1",
        "update": {"certificateKeyUsage": "digitalSignature", f"x{ESC_SEQUENCE}": 1, "\x7fdel": 2},
    }
    result = pipeline().handle(json.dumps(hostile).encode(), Delivery("m-1", 1))
    assert result is not None
    wire = json.loads(result.text)
    assert wire["status"] == "rejected"
    assert unsafe_strings(wire) == []
    assert (
        wire["target"]["tenantId"] == "\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[31m72f988bf-86f1-41af-91ab-2d7cd011db47"
    )
    assert wire["target"]["profileType"] == "ios\\u202eScep\\u009b2J"
    assert wire["target"]["deviceConfigurationId"] == "cfg\\u000d\\u000a\\u0009forged row"
    assert wire["correlationId"] == "m-1"  # not a valid correlation id: the queue's id stands in
    fields = [detail["field"] for detail in wire["error"]["details"]]
    assert "update.x\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[31m" in fields
    assert "update.\\u007fdel" in fields


def test_graph_s_text_is_escaped_but_the_request_replay_sends_is_kept_exactly():
    refused = GraphRefused(code=ErrorCode.GRAPH_BAD_REQUEST, message=f"bad {ESC_SEQUENCE}", graph_code="Bad\x1b[5m",
                           http_status=400, trace=GraphTrace("r\x07", "c", "d\x9b"), attempts=1)  # fmt: skip
    document = {**SEEDED_MESSAGE, "update": {"certificateIssuer": f"CN={ESC_SEQUENCE}"}}
    result = pipeline(RecordingGraph(refused)).handle(json.dumps(document).encode(), Delivery("m-1", 1))
    assert result is not None
    wire = json.loads(result.text)
    assert wire["error"]["message"] == "bad \\u001b]0;pwned\\u0007\\u001b[2J\\u001b[31m"
    assert (wire["error"]["graphCode"], wire["graph"]["requestId"], wire["graph"]["date"]) == (
        "Bad\\u001b[5m",
        "r\\u0007",
        "d\\u009b",
    )
    assert wire["request"] == document  # the message itself, byte for byte what replay sends back
    assert unsafe_strings({k: v for k, v in wire.items() if k != "request"}) == []


def test_warnings_a_deferred_copy_carries_are_escaped_and_a_forged_envelopes_are_never_echoed():
    copies: list[str] = []
    deferring = RecordingGraph(
        DeferralRequested(5, DeferralReason.RETRY_AFTER, ErrorCode.GRAPH_THROTTLED, (f"w{ESC_SEQUENCE}",))
    )
    function = CertStatePipeline(graph=deferring, tenants=directory(), max_dequeue_count=5, clock=lambda: NOW,
                                 graph_base_url="https://graph.microsoft.com/beta", deferrals=MemoryDeferrals(),
                                 requeue=lambda text, _delay: copies.append(text))  # fmt: skip
    assert function.handle(json.dumps(SEEDED_MESSAGE).encode(), Delivery("m-0", 1, NOW)) is None
    (copy,) = copies
    result = function.handle(copy.encode(), Delivery("copy-1", 1))
    assert result is not None
    assert json.loads(result.text)["warnings"] == ["w\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[31m"]

    forged = json.loads(copy)
    forged["certstateDeferral"]["token"] = "t" * 43  # not the record's
    result = function.handle(json.dumps(forged).encode(), Delivery("forged-1", 1))
    assert result is not None
    assert (result.outcome.error and result.outcome.error.code, result.outcome.warnings) == ("unknownDeferral", [])
    assert "\x1b" not in result.text


def test_a_message_of_nothing_but_control_characters_still_gives_an_outcome_that_fits():
    keys = {f"k{i}" + "\x9b" * 40: 1 for i in range(600)}  # each key three times as long once escaped
    targets = dict.fromkeys(("tenantId", "profileType", "deviceConfigurationId", "via"), "\x1b" * 256)
    hostile = {**targets, "update": keys}
    raw = json.dumps(hostile, ensure_ascii=False).encode()
    assert len(raw) <= QUEUE_MESSAGE_BYTES
    budget = outcome_budget("base64")
    result = CertStatePipeline(graph=RecordingGraph(), tenants=directory(), max_dequeue_count=5, clock=lambda: NOW,
                               graph_base_url="https://graph.microsoft.com/beta", outcome_budget=budget,
                               ).handle(raw, Delivery("m-1", 1))  # fmt: skip
    assert result is not None
    assert size(result.text) <= budget
    wire = json.loads(result.text)
    assert unsafe_strings(wire) == []
    assert wire["target"]["tenantId"] == "\\u001b" * 256
    assert "error.details" in wire["truncated"]


@pytest.mark.parametrize("limit", range(10, 22))
def test_a_cut_never_splits_an_escape(limit: int):
    cut = bounded("abcdefgh" + "\x1b" * 4, limit)
    assert len(cut) <= limit
    assert re.fullmatch(r"abcdefgh(\\u001b)*…?", cut), cut
