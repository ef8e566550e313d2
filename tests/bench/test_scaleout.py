"""The figures `python -m bench.scaleout` reports, from one drain's evidence (no runner, no timing)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.scaleout import TENANT_IDS, Drain, passed, summarise

A, B = TENANT_IDS[:2]


def patch(tenant: str, at: float, status: int = 200) -> dict[str, Any]:
    return {"method": "PATCH", "status": status, "tenantId": tenant, "monotonic": at}


def test_each_tenant_is_measured_while_it_has_work_and_store_calls_are_counted_by_kind():
    scenario = Drain("two tenants", (3, 3), write_limit=10, window_s=10.0)  # one write a second each
    log = [patch(A, t) for t in (0.0, 1.0, 2.0)] + [patch(B, t) for t in (0.0, 1.0, 4.0)] + [patch(B, 0.5, 429)]
    stats = {"earlyRetries": 0, "byTenant": {A: {}, B: {"throttled": 1}}}
    report = {"pacing": {"claims": 3, "looks": 2, "reads": 3, "writes": 4}, "runner": {"invocations": 6}, "threads": 24}
    outcomes = [{"messageId": str(i), "status": "succeeded"} for i in range(6)]
    result = summarise(scenario, 2, {str(i): (A, B)[i % 2] for i in range(6)}, outcomes, 0, stats, log,
                       [report, report], [])  # fmt: skip
    assert result["perTenant"][A]["goodput"] == pytest.approx(1.0)
    assert result["minGoodput"] == pytest.approx(0.5)  # B: two writes in four seconds
    assert result["perTenant"][B]["gapSeconds"] == pytest.approx(3 - 10 / 9)
    assert result["claimsPerWrite"] == pytest.approx(1.0)  # six claims, six writes
    assert result["looksPerProcessSecond"] == pytest.approx(4 / (2 * 4.0))  # four looks, two processes, 4 s
    assert result["storeOpsPerWrite"] == pytest.approx((6 + 8) / 6)  # reads and writes, looks among the reads
    assert result["budget429s"] == 1
    assert not passed(result)
    assert (result["lost"], result["duplicateOutcomes"], result["poisoned"]) == (0, 0, 0)
