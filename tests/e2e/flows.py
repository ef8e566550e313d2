"""What the end-to-end tests share: the fast settings, the seed-route messages, and draining a stack."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from devstack.stack import REPO, LocalStack

FAST_SETTINGS = {  # host.json overrides (as app settings) and client limits that keep retries to seconds
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.200",
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:00",
    "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "3",
    "GRAPH_MAX_ATTEMPTS": "3",
    "GRAPH_MAX_WAIT_SECONDS": "3",
    "BREAKER_COOLDOWN_SECONDS": "1",
    "BREAKER_MAX_COOLDOWN_SECONDS": "4",
}
NO_BREAKER = {"BREAKER_FAILURE_THRESHOLD": "1000"}
"""For the tests of what happens when every delivery of a message fails (the breaker would defer it)."""

SEED_ROUTES = [  # the seed page's seven routes, with ids the simulator's default store knows
    json.loads(path.read_text()) for path in sorted((REPO / "examples" / "seed-routes").glob("*.json"))
]
DOC_ROUTES = [  # the current doc page's twenty-four, the first with the page's example body
    json.loads(path.read_text()) for path in sorted((REPO / "examples" / "doc-routes").glob("*.json"))
]
EXPIRY = "2027-01-01T00:02:14.9489247-08:00"


def update_message(index: int = 0, **overrides: Any) -> dict[str, Any]:
    """The seed route `index % 7` (its envelope from examples/), with a known update."""
    example = SEED_ROUTES[index % len(SEED_ROUTES)]
    envelope = {k: v for k, v in example.items() if k in {"profileType", "deviceConfigurationId",
                                                          "managedDeviceCertificateStateId", "via"}}  # fmt: skip
    update = {"certificateExpirationDateTime": EXPIRY, "certificateIssuanceState": "issued"}
    return {"correlationId": f"e2e-{index}", **envelope, "update": update, **overrides}


def run(stack: LocalStack, expected: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Drain the input queue and return exactly the outcomes produced."""
    runner = stack.runner or stack.start_runner()
    runner.run_until_idle(idle_for=0.5, timeout=timeout)
    outcomes = stack.outcomes()
    assert len(outcomes) == expected, Counter(o["status"] for o in outcomes)
    return outcomes


def collect(stack: LocalStack, expected: int, timeout: float) -> list[dict[str, Any]]:
    """Outcomes as they arrive (deferred copies keep the runner busy, so it is never idle meanwhile)."""
    outcomes: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(outcomes) < expected and time.monotonic() < deadline:
        outcomes += stack.outcomes()
        time.sleep(0.2)
    return outcomes


def graph_writes(stack: LocalStack) -> list[dict[str, Any]]:
    return [r for r in stack.graph.requests() if r["method"] == "PATCH"]
