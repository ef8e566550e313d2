"""The demo's closing report: a header over every column, and counts in words, not Python reprs."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from devstack.demo import TENANTS, _report


def outcome(message_id: str, status: str, code: str | None = None, tenant: str | None = None) -> dict[str, Any]:
    error = {"code": code, "details": [{"field": "update"}]} if code else None
    return {
        "messageId": message_id,
        "target": {"tenantId": tenant},
        "status": status,
        "httpStatus": 200 if status == "succeeded" else None,
        "error": error,
    }


def test_the_report_heads_every_column_and_prints_no_reprs():
    stack: Any = SimpleNamespace(
        graph=SimpleNamespace(
            stats=lambda: {
                "writes": 3,
                "throttled": 0,
                "earlyRetries": 0,
                "inFlight": 1,
                "peakWindowWrites": 3,
                "byTenant": {TENANTS["C"]: {"writes": 1, "throttled": 2}},
            }
        ),
        identity=SimpleNamespace(tokens_issued=1),
        entra=SimpleNamespace(stats=lambda: {"issued": {TENANTS["C"]: 1}}),
        poisoned=list,
    )
    expected = {"m1": ("1-ios", "succeeded"), "m2": ("empty-update", "rejected"), "b1": ("burst-000", "succeeded"),
                "b2": ("burst-001", "succeeded")}  # fmt: skip
    outcomes = [outcome("m1", "succeeded"), outcome("m2", "rejected", "validationFailed"),
                outcome("b1", "succeeded", tenant=TENANTS["A"]),
                outcome("b2", "succeeded", tenant=TENANTS["C"])]  # fmt: skip
    out = io.StringIO()
    assert _report(stack, outcomes, expected, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["example", "status", "http", "error", "check"]
    assert lines[2].split() == ["empty-update", "rejected", "validationFailed", "update", "ok"]
    assert "burst of 2: 2 succeeded" in lines
    assert "  tenant C: 1 succeeded; 1 writes, 2 answered 429, 0 early retries, 1 Entra token(s)" in lines
    assert any("0 early retries (1 in flight when a 429 came)" in line for line in lines)
    assert "{" not in out.getvalue()
