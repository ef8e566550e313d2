"""`certstate replay` against Azurite: failed outcomes anywhere on the result queue go back, unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable

from producer.cli.exits import EXIT_INVALID, EXIT_OK, EXIT_STORAGE
from shared.contract.errors import ErrorCode
from shared.contract.outcomes import Status
from tests.cli.harness import Queues, Run
from tests.cli.samples import outcome_json, request

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
    run = cli("replay", *queues.args, "--remove")
    assert run.code == EXIT_INVALID
    assert run.out.splitlines() == [
        "skipped order-4 (failed internalError, message m-4): the outcome carries no request",
        "skipped order-5 (failed internalError, message m-5): its request is invalid now: "
        "update: must set at least one property",
        "skipped order-6 (failed internalError, message m-6): the outcome carries no request "
        "(it was cut: 70000 bytes; the audit trail keeps it)",
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
