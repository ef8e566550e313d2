"""Every outcome fits one queue message and serializes, whatever it echoes (docs/outcomes.md, "Size")."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.contract.limits import QUEUE_MESSAGE_BYTES, outcome_budget
from shared.contract.outcomes import ErrorDetail, Outcome, OutcomeError, Status, Target, fit

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
