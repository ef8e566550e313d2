"""Outages longer than a message's deliveries last: the breaker holds requests back, messages wait on the queue.

Scaled down: with the e2e settings (visibilityTimeout 0, maxDequeueCount 3, 3 attempts, 3 s of waiting per
invocation) a message without the breaker fails within about ten seconds of an outage, as the control test
shows; the outages here last 15 s, and the breaker cools down in 1-4 s instead of 15-120 s.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.e2e.flows import NO_BREAKER, graph_writes, update_message

pytestmark = pytest.mark.e2e

OUTAGE_S = 15.0
MESSAGES = 10
BREAKER = {"BREAKER_FAILURE_THRESHOLD": "3"}


def collect(stack: LocalStack, expected: int, timeout: float) -> list[dict[str, Any]]:
    """Outcomes as they arrive (deferred copies keep the runner busy, so it is never idle meanwhile)."""
    outcomes: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(outcomes) < expected and time.monotonic() < deadline:
        outcomes += stack.outcomes()
        time.sleep(0.2)
    return outcomes


def ride_out(stack: LocalStack, start: Callable[[], None], end: Callable[[], None]) -> tuple[list[dict[str, Any]], int]:
    """Send a backlog, hold the outage for OUTAGE_S while the runner works, recover; (outcomes, writes during)."""
    sent = {stack.send(update_message(i, correlationId=f"outage-{i}")) for i in range(MESSAGES)}
    start()
    stack.start_runner()
    time.sleep(OUTAGE_S)
    writes_during = len(graph_writes(stack))
    end()
    outcomes = collect(stack, MESSAGES, timeout=60)
    assert {o["messageId"] for o in outcomes} == sent  # every original id, none twice
    assert len(outcomes) == MESSAGES
    return outcomes, writes_during


def test_a_graph_outage_longer_than_every_delivery_ends_with_every_message_succeeded(make_stack):
    stack = make_stack(settings=BREAKER)
    outcomes, writes_during = ride_out(
        stack,
        lambda: stack.graph.configure(error_rate=1.0, error_statuses=[502]),
        lambda: stack.graph.configure(error_rate=0.0),
    )
    assert Counter(o["status"] for o in outcomes) == {"succeeded": MESSAGES}
    assert stack.poisoned() == []
    # No storm: the first failures trip the breaker, then one probe per cool-down (1, 2, 4, 4, ... s).
    assert writes_during <= 3 + 3 + OUTAGE_S / 1
    assert stack.graph.stats()["earlyRetries"] == 0


def test_an_identity_outage_is_ridden_out_the_same_way(make_stack):
    stack = make_stack(settings=BREAKER)
    outcomes, _ = ride_out(stack, lambda: stack.identity.set_failing(True), lambda: stack.identity.set_failing(False))
    assert Counter(o["status"] for o in outcomes) == {"succeeded": MESSAGES}
    assert stack.poisoned() == []
    assert stack.identity.token_requests <= 3 + 3 + OUTAGE_S / 1 + MESSAGES  # probes, not every invocation


def test_control_without_the_breaker_the_same_outage_fails_the_backlog(make_stack):
    """What the breaker is for: the host's own redeliveries alone are spent long before the outage ends."""
    stack = make_stack(settings=NO_BREAKER)
    stack.graph.configure(error_rate=1.0, error_statuses=[502])
    for i in range(3):
        stack.send(update_message(i))
    runner = stack.start_runner()
    runner.run_until_idle(idle_for=1.0, timeout=OUTAGE_S)
    outcomes = stack.outcomes()
    assert Counter(o["status"] for o in outcomes) == {"failed": 3}


def test_a_message_waits_no_longer_than_the_deferral_maximum(make_stack):
    stack = make_stack(settings={**BREAKER, "DEFERRAL_MAX_SECONDS": "6"})
    stack.graph.configure(error_rate=1.0, error_statuses=[502])
    sent = stack.send(update_message(0, correlationId="gives-up"))
    stack.start_runner()
    (outcome,) = collect(stack, 1, timeout=40)
    assert (outcome["status"], outcome["error"]["code"], outcome["messageId"]) == ("failed", "graphUnavailable", sent)
    assert "DEFERRAL_MAX_SECONDS" in outcome["error"]["message"]
    assert outcome["request"] == update_message(0, correlationId="gives-up")
    assert stack.poisoned() == []
