"""Outages longer than a message's deliveries last: the breaker holds requests back, messages wait on the queue.

Scaled down: with the e2e settings (visibilityTimeout 0, maxDequeueCount 3, 3 attempts, 3 s of waiting per
invocation) a message without the breaker fails within about ten seconds of an outage, as the control test
shows; the outages here last 15 s (25 s for the backlog), and the breaker cools down in 1-4 s (1-16 s)
instead of 15-120 s.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.e2e.flows import NO_BREAKER, collect, graph_writes, update_message

pytestmark = pytest.mark.e2e

OUTAGE_S = 15.0
MESSAGES = 10
BREAKER = {"BREAKER_FAILURE_THRESHOLD": "3"}


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


def test_once_the_breaker_opens_graph_sees_no_write_but_its_probes(make_stack):
    """Invocations already waiting for a write slot (one every 0.5 s here) do not send once the breaker opened."""
    stack = make_stack(settings={**BREAKER, "GRAPH_WRITE_BUDGET": "10", "GRAPH_WRITE_WINDOW_SECONDS": "5"})
    ride_out(
        stack,
        lambda: stack.graph.configure(error_rate=1.0, error_statuses=[502]),
        lambda: stack.graph.configure(error_rate=0.0),
    )
    failed = [w["monotonic"] for w in graph_writes(stack) if w["status"] == 502]
    # The third failure opened it; after that, one probe per cool-down (1, 2, 4, 4 ... s), nothing in between.
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed[2:])]
    assert len(gaps) >= 3
    assert min(gaps) >= 0.95, gaps


def test_an_identity_outage_while_graph_refuses_the_cached_token_ends_with_every_message_succeeded_once(make_stack):
    """The token the process holds is revoked and the identity endpoint answers 500 (issue 17: 59/60 failed)."""
    stack = make_stack(settings=BREAKER)
    stack.send(update_message(0, correlationId="warm"))
    stack.start_runner()
    assert [o["status"] for o in collect(stack, 1, timeout=30)] == ["succeeded"]  # a token is cached

    def start() -> None:
        stack.identity.set_failing(True)
        stack.graph.revoke_all_tokens()

    outcomes, _ = ride_out(stack, start, lambda: stack.identity.set_failing(False))
    assert Counter(o["status"] for o in outcomes) == {"succeeded": MESSAGES}
    assert stack.poisoned() == []
    applied = [w for w in graph_writes(stack) if w["status"] == 200]
    assert len(applied) == 1 + MESSAGES  # the warm-up, and each message once
    # Graph refused the cached token once per invocation that had it on the wire, not once per delivery.
    assert stack.graph.stats()["unauthorized"] <= MESSAGES


BACKLOG = 40
LONG_OUTAGE_S = 25.0


def test_after_a_long_outage_the_backlog_drains_at_the_write_rate_within_a_base_cooldown_of_the_probe(make_stack):
    """The deferred copies are back when the probe succeeds, not a whole (doubled) cool-down later.

    Scaled: cool-down 1 s doubling to 16 s (15-120 s deployed), a 25 s outage (five minutes in the issue), a
    write limit of 10 per second (49 per 20 s deployed), and Graph answering in 200 ms (loopback answers in
    about a millisecond, so no copy would ever meet a probe in flight). The process sees Graph back at its next
    probe, up to the current cool-down after the outage ended; from that probe's success, every copy is written
    within a base cool-down (a copy deferred while the probe was out: 1-1.2 s, in whole seconds of queue
    visibility, so 2 s) plus what the write limit needs (4 s for 40), plus the runner's polling.
    """
    cooldown, max_cooldown, per_second = 1.0, 16.0, 10
    scaled = {"BREAKER_COOLDOWN_SECONDS": str(cooldown), "BREAKER_MAX_COOLDOWN_SECONDS": str(max_cooldown),
              "GRAPH_WRITE_BUDGET": str(per_second * 4), "GRAPH_WRITE_WINDOW_SECONDS": "4"}  # fmt: skip
    stack = make_stack(settings={**BREAKER, **scaled})
    stack.graph.configure(latency_ms=200, error_rate=1.0, error_statuses=[502])
    sent = {stack.send(update_message(i, correlationId=f"backlog-{i}")) for i in range(BACKLOG)}
    stack.start_runner()
    time.sleep(LONG_OUTAGE_S)
    stack.graph.configure(error_rate=0.0)
    recovered = time.monotonic()
    outcomes = collect(stack, BACKLOG, timeout=90)
    assert {o["messageId"] for o in outcomes} == sent
    assert Counter(o["status"] for o in outcomes) == {"succeeded": BACKLOG}
    applied = sorted(w["monotonic"] for w in graph_writes(stack) if w["status"] == 200)
    probe, last = applied[0], applied[-1]
    write_limit_s = BACKLOG / per_second
    assert last - probe <= 2 + write_limit_s + 2, (probe - recovered, last - probe)
    assert last - recovered <= max_cooldown + 2 + write_limit_s + 2


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
