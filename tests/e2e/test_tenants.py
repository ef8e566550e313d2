"""Many tenants, one deployment: Azurite -> runner -> function_app -> identity + Entra emulators -> Graph simulator."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from devstack.identity_emulator import HOME_TENANT_ID
from devstack.stack import LocalStack
from tests.e2e.flows import run, update_message

pytestmark = pytest.mark.e2e

A, B, C = ("a0000000-0000-4000-8000-00000000000a", "b0000000-0000-4000-8000-00000000000b",
           "c0000000-0000-4000-8000-00000000000c")  # fmt: skip
STRANGER = "dddddddd-0000-4000-8000-00000000000d"
EXCHANGE = "api://AzureADTokenExchange"


def tenant_of(outcome: dict[str, Any]) -> str:
    return outcome["target"]["tenantId"] or HOME_TENANT_ID


def test_three_tenants_one_throttled_each_with_its_own_token_and_limit(make_stack):
    # C's Graph limit (2 per window) is far below what the function paces it at (9): other tools keep it busy.
    stack: LocalStack = make_stack(write_limit=10, write_window_s=2.0, tenants={A: None, B: None, C: 2})
    sent: dict[str, str] = {}
    for i in range(30):
        tenant = (A, B, C)[i % 3]
        sent[stack.send(update_message(i, tenantId=tenant.upper() if i == 4 else tenant))] = tenant
    for i in range(3):
        sent[stack.send(update_message(100 + i))] = HOME_TENANT_ID
    stranger = stack.send(update_message(200, tenantId=STRANGER))

    outcomes = run(stack, len(sent) + 1, timeout=120)
    by_id = {o["messageId"]: o for o in outcomes}
    assert len(by_id) == len(outcomes)  # exactly one outcome per message
    rejected = by_id.pop(stranger)
    assert (rejected["status"], rejected["error"]["code"]) == ("rejected", "tenantNotAllowed")
    assert Counter((sent[m], o["status"]) for m, o in by_id.items()) == {
        (A, "succeeded"): 10, (B, "succeeded"): 10, (C, "succeeded"): 10, (HOME_TENANT_ID, "succeeded"): 3,
    }  # fmt: skip
    assert all(tenant_of(o) == sent[m] for m, o in by_id.items())
    # C's messages waited outside the host (deferred copies), and no delivery was spent on the wait.
    assert stack.runner is not None
    assert stack.runner.stats().invocations > len(outcomes)
    assert {o["dequeueCount"] for o in outcomes} == {1}

    # Tokens: one Graph token per served tenant from Entra, none for the stranger; one managed-identity
    # token for Graph (home) and one for the exchange, reused as every tenant's assertion.
    assert stack.entra is not None
    assert stack.entra.stats()["requests"] == {A: 1, B: 1, C: 1}
    assert stack.identity.tokens_by_resource() == {stack.graph.origin: 1, EXCHANGE: 1}

    # A token is never used for the wrong tenant: every write carried the tid of its message's tenant.
    writes = {r["clientRequestId"]: r for r in stack.graph.requests() if r["method"] == "PATCH"}
    for outcome in by_id.values():
        assert writes[outcome["graph"]["clientRequestId"]]["tenantId"] == tenant_of(outcome)
    stats = stack.graph.stats()
    assert stats["crossTenant"] == 0

    # C's 429s held back C only: A and B met none, and no tenant sent a request while its Retry-After ran.
    per_tenant = stats["byTenant"]
    assert per_tenant[C]["throttled"] >= 1
    assert (per_tenant[A]["throttled"], per_tenant[B]["throttled"]) == (0, 0)
    assert all(counts["earlyRetries"] == 0 for counts in per_tenant.values())
    written: defaultdict[str, list[float]] = defaultdict(list)
    for request in writes.values():
        if request["status"] == 200:
            written[request["tenantId"]].append(request["monotonic"])
    assert max(written[A]) < max(written[C])  # C's backlog waited alone
    assert max(written[B]) < max(written[C])
