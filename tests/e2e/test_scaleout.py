"""Four runner processes on one queue, as four Flex instances: one write budget per tenant for all of them.

Each process runs the real `function_app` under devstack's runner with the app settings infra deploys
for four instances (`deployed_settings`), the shared schedules in Azurite's table service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from azure.data.tables import TableClient

from devstack.stack import LocalStack
from shared.graph.budget import FALLBACK_SECONDS, PARTITION
from tests.e2e.flows import collect, update_message

pytestmark = pytest.mark.e2e

A, B, C = ("a0000000-0000-4000-8000-00000000000a", "b0000000-0000-4000-8000-00000000000b",
           "c0000000-0000-4000-8000-00000000000c")  # fmt: skip
LIMIT, WINDOW = 10, 2.0
INSTANCES = 4


def start(make_stack: Callable[..., LocalStack], tenants: dict[str, int | None]) -> LocalStack:
    return make_stack(write_limit=LIMIT, write_window_s=WINDOW, tenants=tenants, instances=INSTANCES,
                       settings={"GRAPH_MAX_WAIT_SECONDS": "30"})  # fmt: skip


def spawn(stack: LocalStack) -> list[subprocess.Popen[bytes]]:
    return [stack.spawn_runner() for _ in range(INSTANCES)]


def every_outcome(stack: LocalStack, expected: int, timeout: float) -> list[dict[str, Any]]:
    outcomes = collect(stack, expected, timeout)
    time.sleep(2.0)  # and nothing more comes: a second outcome for any message would show here
    return outcomes + stack.outcomes()


def writes_of(stack: LocalStack, tenant: str) -> list[float]:
    return sorted(r["monotonic"] for r in stack.graph.requests()
                  if r["method"] == "PATCH" and r["status"] == 200 and r["tenantId"] == tenant)  # fmt: skip


def most_in_a_window(times: list[float]) -> int:
    return max((sum(1 for t in times[i:] if t < start + WINDOW) for i, start in enumerate(times)), default=0)


def send(stack: LocalStack, counts: dict[str, int]) -> dict[str, str]:
    sent: dict[str, str] = {}
    for tenant, count in counts.items():
        for i in range(count):
            sent[stack.send(update_message(i, tenantId=tenant))] = tenant
    return sent


def test_four_instances_share_each_tenant_s_limit_and_a_429_in_one_holds_them_all(make_stack):
    # C's Graph limit (2 per window) is far below its budget (9): a 429 storm that every instance must honour.
    stack = start(make_stack, {A: None, B: None, C: 2})
    sent = send(stack, {A: 40, B: 40, C: 8})
    processes = spawn(stack)
    outcomes = every_outcome(stack, len(sent), timeout=150)
    assert all(p.poll() is None for p in processes)  # four instances ran it through

    per_message = Counter(o["messageId"] for o in outcomes)
    assert set(per_message) == set(sent)  # nothing lost
    assert set(per_message.values()) == {1}  # and exactly one outcome each
    assert Counter(o["status"] for o in outcomes) == {"succeeded": len(sent)}
    stats = stack.graph.stats()
    for tenant in (A, B):
        assert most_in_a_window(writes_of(stack, tenant)) <= LIMIT  # four processes, one budget
        assert stats["byTenant"][tenant].get("throttled", 0) == 0  # the budget itself never meets a 429
    assert stats["byTenant"][C]["throttled"] > 0  # C was in its storm ...
    assert stats["earlyRetries"] == 0  # ... and no process wrote to it during a Retry-After another one was given


def test_the_table_stalled_mid_drain_loses_nothing_keeps_the_limit_and_pacing_comes_back(make_stack, azurite):
    stack = start(make_stack, {A: None, B: None})
    sent = send(stack, {A: 120, B: 40})
    processes = spawn(stack)
    while len(writes_of(stack, A)) < 10:  # mid-drain
        time.sleep(0.2)
    os.killpg(azurite.table_pid, signal.SIGSTOP)  # the table service stops answering: the shared schedules too
    try:
        time.sleep(6.0)
    finally:
        os.killpg(azurite.table_pid, signal.SIGCONT)
    resumed, resumed_wall = time.monotonic(), time.time()
    outcomes = every_outcome(stack, len(sent), timeout=240)
    assert all(p.poll() is None for p in processes)

    per_message = Counter(o["messageId"] for o in outcomes)
    assert set(per_message) == set(sent)  # nothing lost
    assert set(per_message.values()) == {1}
    assert Counter(o["status"] for o in outcomes) == {"succeeded": len(sent)}
    stats = stack.graph.stats()
    for tenant in (A, B):
        assert most_in_a_window(writes_of(stack, tenant)) <= LIMIT  # the split kept the limit meanwhile
        # Nor did the instances' writes pass it: no 429 of the budget's, though instances fell back and came
        # back at different times, and some met the outage only in their copies' deferral records, their
        # pacers sending nothing meanwhile (docs/design.md, "Pacing across instances", how it fails).
        assert stats["byTenant"][tenant].get("throttled", 0) == 0
    assert stats["earlyRetries"] == 0
    # Back on the shared schedule once the fallback period is over: the tenant's row took claims again.
    after = [t for t in writes_of(stack, A) if t > resumed + FALLBACK_SECONDS + 0.5]
    assert len(after) > 8, "the backlog outlasts the fallback period"
    table = TableClient.from_connection_string(stack.azurite.connection_string,
                                               stack.settings["GRAPH_PACING_TABLE_NAME"])  # fmt: skip
    row = table.get_entity(PARTITION, A)
    assert row["nextSlot"] > resumed_wall + FALLBACK_SECONDS
