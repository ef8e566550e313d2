"""`certstate replay` against Azurite: failed outcomes anywhere on the result queue go back, unchanged."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient

from producer.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_STORAGE
from shared.contract.errors import DeferralReason, DeferralRequested, ErrorCode, GraphRefused, GraphTrace
from shared.contract.limits import outcome_budget
from shared.contract.outcomes import Status
from shared.pipeline import CertStatePipeline, Delivery
from tests.cli.harness import Queues, Run
from tests.cli.samples import outcome_json, request
from tests.support.audit import audit_trail
from tests.support.deferral_fakes import MemoryDeferrals
from tests.support.pipeline_fakes import RecordingGraph, directory

Cli = Callable[..., Run]


def test_replay_dry_run_changes_nothing(cli: Cli, queues: Queues):
    queues.put_outcomes(outcome_json(Status.FAILED, "order-9", "m-9", error_code=ErrorCode.GRAPH_THROTTLED))
    run = cli("replay", *queues.args, "--dry-run")
    assert run.code == EXIT_OK
    assert run.out.splitlines() == [
        "would replay order-9 (failed graphThrottled, message m-9)",
        "dry run: 1 would be replayed, 0 skipped (1 message scanned); nothing sent or removed",
    ]
    assert queues.contents(queues.input) == []
    assert len(queues.contents(queues.result)) == 1  # visible again at once


def test_replay_re_enqueues_the_request_unchanged_and_removes_when_asked(cli: Cli, queues: Queues):
    queues.put_outcomes(
        outcome_json(Status.FAILED, "order-1", "m-1", error_code=ErrorCode.GRAPH_THROTTLED),
        outcome_json(Status.FAILED, "order-1", "m-1", error_code=ErrorCode.GRAPH_THROTTLED),  # a duplicate outcome
        outcome_json(Status.FAILED, "order-2", "m-2", error_code=ErrorCode.GRAPH_FORBIDDEN),
        outcome_json(Status.SUCCEEDED, "order-3", "m-3"),
    )
    run = cli("replay", *queues.args, "--error-code", "graphThrottled", "--remove")
    assert run.code == EXIT_OK
    [replayed, summary] = run.out.splitlines()
    assert replayed.startswith("replayed order-1 (failed graphThrottled, message m-1) as message ")
    assert summary == (
        f"replayed 1 onto '{queues.input.queue_name}', 0 skipped (4 messages scanned); removed 2 outcome messages"
    )
    [sent] = queues.contents(queues.input)
    assert json.loads(sent) == request("order-1")
    left = sorted(json.loads(c)["correlationId"] for c in queues.contents(queues.result))
    assert left == ["order-2", "order-3"]


def test_replay_finds_failed_outcomes_behind_a_long_queue_and_reports_json(cli: Cli, queues: Queues):
    queues.put_outcomes(*(outcome_json(Status.SUCCEEDED, f"ok-{i:03d}", f"m-ok-{i:03d}") for i in range(110)))
    queues.put_outcomes(outcome_json(Status.FAILED, "deep", "m-deep", error_code=ErrorCode.GRAPH_UNAVAILABLE))
    run = cli("replay", *queues.args, "--json", "--remove")
    assert run.code == EXIT_OK
    [report] = [json.loads(line) for line in run.out.splitlines()]
    assert {k: report[k] for k in ("action", "correlationId", "messageId", "errorCode")} == {
        "action": "replayed",
        "correlationId": "deep",
        "messageId": "m-deep",
        "errorCode": "graphUnavailable",
    }
    [sent] = queues.contents(queues.input)
    assert report["newMessageId"] == next(iter(queues.input.peek_messages())).id
    assert json.loads(sent)["correlationId"] == "deep"
    assert "(111 messages scanned); removed 1 outcome message" in run.err
    assert len(queues.contents(queues.result)) == 110


def test_replay_by_correlation_id_keeps_outcomes_without_remove(cli: Cli, queues: Queues):
    queues.put_outcomes(
        outcome_json(Status.FAILED, "order-1", "m-1", error_code=ErrorCode.GRAPH_THROTTLED),
        outcome_json(Status.FAILED, "order-2", "m-2", error_code=ErrorCode.GRAPH_THROTTLED),
    )
    run = cli("replay", *queues.args, "--correlation-id", "order-2")
    assert run.code == EXIT_OK
    assert [json.loads(c)["correlationId"] for c in queues.contents(queues.input)] == ["order-2"]
    assert len(queues.contents(queues.result)) == 2


def test_replay_skips_what_it_cannot_replay_and_exits_1(cli: Cli, queues: Queues):
    invalid = json.loads(outcome_json(Status.FAILED, "order-5", "m-5", error_code=ErrorCode.INTERNAL_ERROR))
    invalid["request"]["update"] = {}
    cut = json.loads(outcome_json(Status.FAILED, "order-6", "m-6", error_code=ErrorCode.INTERNAL_ERROR))
    cut["request"], cut["requestOmitted"] = None, {"bytes": 70000, "sha256": "0" * 64}
    queues.put_outcomes(
        outcome_json(Status.FAILED, "order-4", "m-4", error_code=ErrorCode.INTERNAL_ERROR, with_request=False),
        json.dumps(invalid),
        json.dumps(cut),
    )
    run = cli("replay", *queues.args, "--remove", "--table", "nosuchaudittable")
    assert run.code == EXIT_INVALID
    assert run.out.splitlines() == [
        "skipped order-4 (failed internalError, message m-4): the outcome carries no request",
        "skipped order-5 (failed internalError, message m-5): its request is invalid now: "
        "update: must set at least one property",
        "skipped order-6 (failed internalError, message m-6): the outcome carries no request "
        f"(it was cut: 70000 bytes, and there is no audit table 'nosuchaudittable' at {endpoint(queues)} "
        "to read it from)",
        f"replayed 0 onto '{queues.input.queue_name}', 3 skipped (3 messages scanned); removed 0 outcome messages",
    ]
    assert len(queues.contents(queues.result)) == 3  # kept, and visible


def test_replay_with_nothing_to_do(cli: Cli, queues: Queues):
    queues.put_outcomes(outcome_json(Status.SUCCEEDED, "fine", "m-1"))
    run = cli("replay", *queues.args)
    assert (run.code, run.out) == (
        EXIT_OK,
        f"no failed outcomes match (1 message scanned on '{queues.result.queue_name}')\n",
    )
    assert len(queues.contents(queues.result)) == 1


def test_replay_to_a_missing_input_queue_puts_the_outcomes_back(
    cli: Cli, queues: Queues, queue_names: Callable[[str], str]
):
    queues.put_outcomes(outcome_json(Status.FAILED, "order-1", "m-1", error_code=ErrorCode.GRAPH_THROTTLED))
    missing = queue_names("gone")
    run = cli("replay", *queues.result_args, "--input-queue", missing, "--remove")
    assert run.code == EXIT_STORAGE
    assert run.err.endswith(
        f"queue {missing!r} at {queues.connection_string.split('QueueEndpoint=')[1][:-1]} does not exist\n"
    )
    assert len(queues.contents(queues.result)) == 1


# ---- issue 17: an outcome that had to leave its request out is replayed from the audit trail -------


def near_limit(correlation_id: str) -> dict[str, Any]:
    """A message too large for its `failed` outcome to carry it (a 49,152-byte budget), small enough for base64."""
    document = request(correlation_id, certificateKeyUsage="digitalSignature", certificateIssuer="")
    room = 49_000 - len(json.dumps(document, ensure_ascii=False).encode())
    document["update"]["certificateIssuer"] = "CN=" + "é" * (room // 2 - 2)
    return document


def refused_and_audited(table: TableClient, body: bytes, message_id: str, *, deferred: bool = False) -> str:
    """The outcome text the function writes for a message Graph refuses, its audit row written as the function does.

    `deferred`: the message is deferred once first, so what Graph refuses (and the audit row keeps) is its copy.
    """
    refused = GraphRefused(code=ErrorCode.GRAPH_NOT_FOUND, message="gone", http_status=404, trace=GraphTrace("r", "c"))
    copies: list[str] = []
    graph = RecordingGraph(*([DeferralRequested(5, DeferralReason.BREAKER_OPEN)] if deferred else []), refused)
    function = CertStatePipeline(
        graph=graph, tenants=directory(), graph_base_url="https://graph.microsoft.com/beta",
        max_dequeue_count=5, audit=audit_trail(table), clock=lambda: datetime.now(UTC),
        outcome_budget=outcome_budget("base64"), requeue=lambda text, _delay: copies.append(text),
        deferrals=MemoryDeferrals(),
    )  # fmt: skip
    enqueued = datetime.now(UTC) - timedelta(days=2)  # an earlier day's partition than the outcome's
    if deferred:
        assert function.handle(body, Delivery(message_id, 1, enqueued)) is None
        (copy,) = copies
        result = function.handle(copy.encode(), Delivery("copy-of-" + message_id, 1))
    else:
        result = function.handle(body, Delivery(message_id, 1, enqueued))
    assert result is not None
    assert (result.outcome.status, result.outcome.request, result.outcome.truncated) == (
        Status.FAILED,
        None,
        ["request"],
    )
    return result.text


@pytest.mark.parametrize("stored", ["raw", "base64", "deferred"])
def test_a_cut_request_is_replayed_from_the_audit_trail(cli: Cli, queues: Queues, audit_table: TableClient, stored):
    document = near_limit("cut-1")
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    body = {"raw": text, "base64": base64.b64encode(text.encode()).decode(), "deferred": text}[stored].encode()
    queues.put_outcomes(refused_and_audited(audit_table, body, "m-cut", deferred=stored == "deferred"))
    run = cli("replay", *queues.args, "--table", audit_table.table_name, "--remove")
    assert run.code == EXIT_OK, run.out + run.err
    [line, summary] = run.out.splitlines()
    assert line.startswith("replayed cut-1 (failed graphNotFound, message m-cut; its request from the audit trail)")
    assert (
        summary
        == f"replayed 1 onto '{queues.input.queue_name}', 0 skipped (1 message scanned); removed 1 outcome message"
    )
    [sent] = queues.contents(queues.input)
    assert json.loads(sent) == document
    assert sent == text  # the producer library's form: byte for byte what requestOmitted describes
    assert queues.contents(queues.result) == []


def test_an_audit_row_that_is_not_the_cut_request_is_not_replayed(cli: Cli, queues: Queues, audit_table: TableClient):
    document = near_limit("cut-2")
    outcome = json.loads(refused_and_audited(audit_table, json.dumps(document, ensure_ascii=False).encode(), "m-cut-2"))
    outcome["requestOmitted"]["sha256"] = "0" * 64  # another request than the one the audit trail keeps
    queues.put_outcomes(json.dumps(outcome))
    run = cli("replay", *queues.args, "--table", audit_table.table_name, "--json")
    assert run.code == EXIT_INVALID
    [report] = [json.loads(line) for line in run.out.splitlines()]
    assert (report["action"], report["messageId"]) == ("skipped", "m-cut-2")
    assert report["reason"].startswith("the outcome carries no request (it was cut: ")
    assert report["reason"].endswith(
        f"and the audit table {audit_table.table_name!r} at {endpoint(queues)} does not keep it)"
    )
    assert queues.contents(queues.input) == []


def endpoint(queues: Queues) -> str:
    return queues.connection_string.split("QueueEndpoint=")[1][:-1]
