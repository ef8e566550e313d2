"""The function's own storage never decides whether a message gets its outcome (issue 17).

The audit table missing its service, or a table service that takes connections and never answers: every
message still ends in exactly one outcome, soon. Through Azurite's queue service, the local runner, the
managed-identity emulator and the Graph simulator.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite, port_answers
from devstack.stack import LocalStack
from tests.e2e.flows import FAST_SETTINGS, run, update_message
from tests.support.silent import SilentServer

pytestmark = pytest.mark.e2e

MESSAGES = 10


def account(queue_endpoint: str, table_endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint={queue_endpoint};TableEndpoint={table_endpoint};"
    )


def test_development_storage_with_only_the_queue_service_running_gives_every_message_its_outcome():
    """`UseDevelopmentStorage=true` with Azurite's queue service alone (VS Code's "Start Queue Service").

    The connection names the table service on 127.0.0.1:10002, where nothing listens: the audit trail
    fails, counted, and the outcome goes out regardless.
    """
    if port_answers(10001) or port_answers(10002):
        pytest.skip("the development storage ports 10001/10002 are taken on this machine")
    development = {**FAST_SETTINGS, "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    with Azurite(port=10001) as queues_only, LocalStack(azurite=queues_only, settings=development) as stack:
        assert not port_answers(10002)  # the table service this Azurite started is elsewhere
        sent = {stack.send(update_message(i)) for i in range(MESSAGES)}
        outcomes = run(stack, MESSAGES)
        assert {o["messageId"] for o in outcomes} == sent
        assert Counter(o["status"] for o in outcomes) == {"succeeded": MESSAGES}
        assert stack.poisoned() == []


def test_a_table_service_that_never_answers_delays_no_outcome_past_the_audit_wait(make_stack, azurite):
    with SilentServer() as table_service:
        stack = make_stack(
            settings={
                "AzureWebJobsStorage": account(azurite.queue_endpoint, table_service.endpoint),
                "AUDIT_WAIT_SECONDS": "1",
                # The audit trail's wait alone: pacing on a silent table (one bounded call, then the split)
                # is tests/e2e/test_scaleout.py's stalled table and tests/unit/test_budget.py.
                "GRAPH_PACING_TABLE_NAME": "",
            }
        )
        sent = {stack.send(update_message(i)) for i in range(MESSAGES)}
        started = time.monotonic()
        outcomes = run(stack, MESSAGES, timeout=60)
        assert {o["messageId"] for o in outcomes} == sent
        assert Counter(o["status"] for o in outcomes) == {"succeeded": MESSAGES}
        assert max(o["durationMs"] for o in outcomes) < 5_000  # each waited ~1 s for its row, not the SDK's 300 s
        assert time.monotonic() - started < 30
        assert table_service.connections >= 1  # the writes were tried, and went unanswered
        assert stack.poisoned() == []
