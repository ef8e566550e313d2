"""A redirect from Graph, through Azurite, the runner and the function: one call, `graphRequestFailed`, not followed."""

from __future__ import annotations

import pytest

from devstack.graph_simulator import REDIRECT_PREFIX
from tests.e2e.flows import graph_writes, run, update_message

pytestmark = pytest.mark.e2e


def test_a_302_from_graph_is_one_call_and_a_failed_outcome_naming_it(make_stack):
    stack = make_stack()
    stack.graph.configure(script=[{"status": 302}])
    sent = stack.send(update_message(0, correlationId="redirected"))
    (outcome,) = run(stack, 1)
    assert (outcome["messageId"], outcome["status"], outcome["httpStatus"], outcome["attempts"]) == (
        sent, "failed", 302, 1,
    )  # fmt: skip
    assert outcome["dequeueCount"] == 1  # not handed back to the host for another try
    assert outcome["error"]["code"] == "graphRequestFailed"
    assert "Graph answered 302, a redirect" in outcome["error"]["message"]
    assert outcome["request"] == update_message(0, correlationId="redirected")  # for a replay
    assert [w["status"] for w in graph_writes(stack)] == [302]
    assert not [r for r in stack.graph.requests() if r["path"].startswith(REDIRECT_PREFIX)]  # never followed
    assert stack.poisoned() == []
