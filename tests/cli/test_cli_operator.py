"""`certstate health` and `certstate history` against the whole local stack (Azurite, runner, simulators)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devstack.azurite import Azurite
from devstack.stack import LocalStack
from tests.support.pipeline_fakes import SEEDED_MESSAGE


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[LocalStack]:
    with LocalStack(azurite=azurite) as local:
        yield local


def target(stack: LocalStack) -> list[str]:
    return ["--connection-string", stack.azurite.connection_string, "--table", stack.settings["AUDIT_TABLE_NAME"]]


def test_health_sends_a_dry_run_and_reads_its_outcome_back(cli, stack):
    stack.start_runner()
    run = cli("health", *target(stack), "--input-queue", stack.settings["INPUT_QUEUE_NAME"], "--wait", "60")
    assert run.code == 0, run.err
    assert "outcome validated" in run.out
    assert stack.graph.stats()["requests"] == 0  # a dry run changes nothing in Intune
    (outcome,) = stack.outcomes()
    assert outcome["correlationId"].startswith("health-")


def test_health_fails_when_no_function_answers(cli, stack):
    run = cli("health", *target(stack), "--input-queue", stack.settings["INPUT_QUEUE_NAME"], "--wait", "1")
    assert run.code == 5
    assert "no outcome" in run.err


def test_history_answers_what_happened_to_a_correlation_id(cli, stack):
    stack.start_runner()
    message = SEEDED_MESSAGE
    stack.send(message)
    stack.send({**message, "correlationId": "order-4712", "update": {"noSuchProperty": 1}})
    assert stack.runner is not None
    stack.runner.run_until_idle(timeout=60)
    run = cli("history", *target(stack), "--correlation-id", "order-4711", "--json")
    assert run.code == 0, run.err
    (found,) = [json.loads(line) for line in run.out.splitlines()]
    assert (found["status"], found["httpStatus"]) == ("succeeded", 200)
    by_state = cli("history", *target(stack), "--state-id", message["managedDeviceCertificateStateId"], "--json")
    assert sorted(json.loads(line)["status"] for line in by_state.out.splitlines()) == ["rejected", "succeeded"]
    rejected = cli("history", *target(stack), "--status", "rejected")
    assert "order-4712" in rejected.out
    assert cli("history", *target(stack), "--correlation-id", "order-0000").code == 1


def test_history_of_a_missing_table_is_one_clear_line(cli, stack):
    run = cli("history", "--connection-string", stack.azurite.connection_string, "--table", "nosuchtable",
              "--correlation-id", "x")  # fmt: skip
    assert run.code == 3
    assert "audit table 'nosuchtable'" in run.err


# ---- issue 17: through the function, the runner and Azurite ---------------------------------------


def test_a_hostile_tenant_id_reaches_the_operator_escaped(cli, stack):
    stack.start_runner()
    hostile = {**SEEDED_MESSAGE, "correlationId": "hostile-1", "tenantId": "\x1b]0;owned\x07\x1b[2J\u202e"}
    stack.send(hostile)  # JSON's escapes: the queue holds ASCII, the function reads the control characters
    assert stack.runner is not None
    stack.runner.run_until_idle(timeout=60)
    run = cli("results", "--connection-string", stack.azurite.connection_string,
              "--result-queue", stack.settings["RESULT_QUEUE_NAME"], "--json")  # fmt: skip
    (outcome,) = [json.loads(line) for line in run.out.splitlines()]
    assert (outcome["status"], outcome["correlationId"]) == ("rejected", "hostile-1")
    assert outcome["target"]["tenantId"] == "\\u001b]0;owned\\u0007\\u001b[2J\\u202e"
    history = cli("history", *target(stack), "--correlation-id", "hostile-1")
    assert "\x1b" not in history.out + history.err
    assert history.code == 0, history.err


def test_replay_sends_a_cut_request_back_from_the_audit_trail(cli, stack):
    stack.start_runner()
    message = {**SEEDED_MESSAGE, "correlationId": "cut-e2e", "managedDeviceCertificateStateId": "no-such-state"}
    message["update"] = {**message["update"], "certificateIssuer": ""}
    room = 65_000 - len(json.dumps(message, separators=(",", ":")).encode())
    message["update"]["certificateIssuer"] = "CN=" + "x" * (room - 3)
    stack.send(json.dumps(message, separators=(",", ":")))
    assert stack.runner is not None
    stack.runner.run_until_idle(timeout=60)
    queues = [
        "--input-queue",
        stack.settings["INPUT_QUEUE_NAME"],
        "--result-queue",
        stack.settings["RESULT_QUEUE_NAME"],
    ]
    run = cli("replay", *target(stack), *queues, "--remove", "--json")
    assert run.code == 0, run.out + run.err
    (report,) = [json.loads(line) for line in run.out.splitlines()]
    assert (report["action"], report["correlationId"], report["requestFrom"]) == ("replayed", "cut-e2e", "auditTrail")
    stack.runner.run_until_idle(timeout=60)
    (again,) = stack.outcomes()  # the replayed message, refused again, with its own outcome
    assert (again["correlationId"], again["status"], again["truncated"]) == ("cut-e2e", "failed", ["request"])
    assert again["requestOmitted"]["bytes"] == len(json.dumps(message, separators=(",", ":")).encode())
