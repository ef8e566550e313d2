"""Deferrals written once, and envelopes that cannot lie (issue 17, items 2 and 5), through the whole local stack.

Deferrals are provoked as in test_outages.py: Graph answers 502 until the breaker opens, and every delivery
then puts its message back. The queue stall is scaled down: the queue service is paused 20 s (the issue saw
90 s), four times the deferral send's read timeout (5 s), and shorter than the runner's own storage timeout
(60 s), so the stalled requests the runner makes complete once, late, as they would in the host.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from devstack.stack import LocalStack
from producer.audit import HistoryQuery, history
from shared import storage
from shared.contract.audit import AuditSummary
from tests.e2e.flows import graph_writes, run, update_message

pytestmark = pytest.mark.e2e

PAUSE_S = 20.0
SEND_BOUND_S = 12.0  # the copy's send: 3 s to connect, 5 s to answer, with room for a slow machine
BREAKER = {"BREAKER_FAILURE_THRESHOLD": "3"}


def audit_table(stack: LocalStack) -> TableClient:
    service = TableServiceClient.from_connection_string(stack.azurite.connection_string)
    return service.get_table_client(stack.settings["AUDIT_TABLE_NAME"])


def audit_row(stack: LocalStack, message_id: str) -> list[AuditSummary]:
    now = datetime.now(UTC)
    return history(audit_table(stack), HistoryQuery(since=now - timedelta(days=1), until=now, message_id=message_id))


class StalledSends:
    """Times every deferral send; the first one pauses the queue service for PAUSE_S, as a stall would."""

    def __init__(self, stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stack = stack
        self.sends: list[tuple[float, str | None]] = []  # (seconds, exception name)
        self.resumed = threading.Event()
        self._paused = False
        self._lock = threading.Lock()
        real = storage.QueueSender.send

        def send(sender: storage.QueueSender, text: str, visibility_timeout: int) -> None:
            with self._lock:
                if not self._paused:
                    self._paused = True
                    stack.azurite.pause()
                    threading.Timer(PAUSE_S, self._resume).start()
            started, failure = time.monotonic(), None
            try:
                real(sender, text, visibility_timeout)
            except Exception as err:
                failure = type(err).__name__
                raise
            finally:
                with self._lock:
                    self.sends.append((time.monotonic() - started, failure))

        monkeypatch.setattr(storage.QueueSender, "send", send)

    def _resume(self) -> None:
        self.stack.azurite.resume()
        self.resumed.set()


def outcomes_until(stack: LocalStack, ids: set[str], timeout: float) -> list[dict[str, Any]]:
    """Outcomes as they arrive, until every id in `ids` has one (deferred copies keep the runner busy)."""
    outcomes: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not ids <= {o["messageId"] for o in outcomes} and time.monotonic() < deadline:
        outcomes += stack.outcomes()
        time.sleep(0.2)
    return outcomes


def test_a_queue_stall_while_messages_are_deferred_ends_with_one_outcome_and_one_patch_each(make_stack, monkeypatch):
    stack: LocalStack = make_stack(settings=BREAKER)
    messages = 8
    stack.graph.configure(error_rate=1.0, error_statuses=[502])
    sent = {stack.send(update_message(i, correlationId=f"stall-{i}")) for i in range(messages)}
    stalled = StalledSends(stack, monkeypatch)
    try:
        runner = stack.start_runner()
        assert stalled.resumed.wait(PAUSE_S + 60), "no deferral was sent"
        stack.graph.configure(error_rate=0.0)
        outcomes = outcomes_until(stack, sent, timeout=120)
        runner.run_until_idle(idle_for=1.0, timeout=60)  # copies of unknown fate come back and end too
        outcomes += stack.outcomes()
    finally:
        stack.azurite.resume()
    by_id = Counter(o["messageId"] for o in outcomes)
    assert {m: by_id[m] for m in sent} == dict.fromkeys(sent, 1)  # exactly one outcome per message
    assert {o["status"] for o in outcomes if o["messageId"] in sent} == {"succeeded"}
    others = [o for o in outcomes if o["messageId"] not in sent]
    assert {(o["status"], o["error"]["code"]) for o in others} <= {("rejected", "duplicateDeferral")}
    assert all(o["correlationId"] == o["messageId"] for o in others)  # a duplicate never speaks for the message
    applied = [w for w in graph_writes(stack) if w["status"] == 200]
    assert len(applied) == messages  # one PATCH per message
    assert stack.poisoned() == []
    # The stall was met and bounded: sends gave up in time instead of holding their invocation for the pause.
    assert any(failure for _, failure in stalled.sends), stalled.sends
    assert max(seconds for seconds, _ in stalled.sends) < SEND_BOUND_S, stalled.sends


def forged(message: dict[str, Any], **envelope: Any) -> str:
    return json.dumps({"certstateDeferral": envelope, "message": message})


def test_forged_envelopes_end_in_one_rejected_outcome_each_and_touch_no_other_message(make_stack):
    stack: LocalStack = make_stack()
    victim = stack.send(update_message(0, correlationId="victim"))
    (done,) = run(stack, 1)
    assert (done["messageId"], done["status"]) == (victim, "succeeded")
    (before,) = audit_row(stack, victim)
    assert before.correlation_id == "victim"

    old_shape = {"messageId": victim, "failedDeliveries": 0, "deferrals": 1}
    attempts = {
        "out of range": forged(update_message(1, correlationId="forger-1"), **old_shape,
                               deferredSince="9999-12-31T23:59:59-00:01"),
        "future": forged(update_message(2, correlationId="forger-2"), **old_shape,
                         deferredSince="2999-01-01T00:00:00Z"),
        "another message's id": forged(update_message(3, correlationId="forger-3"), messageId=victim, deferral=1,
                                       token="A" * 32, day=before.enqueued_at.strftime("%Y%m%d")),
        "wrong types": forged(update_message(4, correlationId="forger-4"), messageId=victim, deferral="1",
                              token=7, day=None),
    }  # fmt: skip
    ids = {stack.send(text): name for name, text in attempts.items()}
    outcomes = run(stack, len(attempts))
    assert {o["messageId"] for o in outcomes} == set(ids)  # each under its own id, none under the victim's
    for outcome in outcomes:
        name = ids[outcome["messageId"]]
        assert outcome["status"] == "rejected", name
        assert outcome["error"]["code"] in {"malformedMessage", "unknownDeferral"}, name
        assert outcome["correlationId"] == outcome["messageId"], name
    assert stack.poisoned() == []
    assert len([w for w in graph_writes(stack) if w["status"] == 200]) == 1  # the victim's own PATCH only
    (after,) = audit_row(stack, victim)
    assert after == before
