"""Azurite -> local runner -> function_app -> Graph simulator -> result queue, on real local parts."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from typing import Any

import pytest

from shared.contract.parsing import parse_message
from tests.e2e.flows import DOC_ROUTES, EXPIRY, NO_BREAKER, SEED_ROUTES, graph_writes, run, update_message
from tests.support.reference import doc_patch_paths, seed_patch_paths

pytestmark = pytest.mark.e2e


def test_the_seven_seed_routes_update_graph(make_stack):
    stack = make_stack()
    ids = {stack.send(update_message(i)): i for i in range(7)}
    outcomes = run(stack, 7)
    assert {o["messageId"] for o in outcomes} == set(ids)
    assert {o["status"] for o in outcomes} == {"succeeded"}
    assert all(o["graph"]["requestId"] for o in outcomes)
    assert len({r["path"] for r in graph_writes(stack)}) == 7  # seven distinct routes, one write each
    store = json.dumps(stack.graph.store())
    assert store.count(EXPIRY) >= 7
    assert stack.poisoned() == []
    assert stack.identity.tokens_issued == 1


def test_every_example_route_reaches_graph_at_its_doc_path_and_succeeds(make_stack):
    stack = make_stack()
    expected = {}
    for examples, paths in ((SEED_ROUTES, seed_patch_paths()), (DOC_ROUTES, doc_patch_paths())):
        for example, path in zip(examples, paths, strict=True):
            concrete = path.replace("{deviceConfigurationId}", example["deviceConfigurationId"]).replace(
                "{managedDeviceCertificateStateId}", example["managedDeviceCertificateStateId"]
            )
            expected[stack.send(example)] = (example, "/beta" + concrete)
    outcomes = run(stack, 7 + 24)
    writes = {r["clientRequestId"]: r for r in graph_writes(stack)}
    assert len(writes) == 31  # one write each, no retry
    for outcome in outcomes:
        example, path = expected[outcome["messageId"]]
        assert (outcome["correlationId"], outcome["status"]) == (example["correlationId"], "succeeded")
        write = writes[outcome["graph"]["clientRequestId"]]
        assert write["path"] == path
        assert list(write["body"].items()) == list(example["update"].items())  # as given, in its order
        assert outcome["updatedProperties"] == [name for name in example["update"] if name != "@odata.type"]
    (seed_hop,) = (o["warnings"] for o in outcomes if o["correlationId"] == "seed-route-6")
    assert seed_hop == parse_message(SEED_ROUTES[5]).warnings
    assert "androidForWorkVpnConfiguration" in seed_hop[0]  # the owner cast the seed's VPN profile needs
    assert stack.poisoned() == []


def test_raw_json_and_base64_producers_are_both_served(make_stack):
    stack = make_stack()
    stack.send(update_message(0, correlationId="raw-json"), encoding="none")  # Logic Apps, Python SDK default
    stack.send(update_message(1, correlationId="base64"), encoding="base64")  # the Functions default encoding
    outcomes = {o["correlationId"]: o for o in run(stack, 2)}
    assert {c: o["status"] for c, o in outcomes.items()} == {"raw-json": "succeeded", "base64": "succeeded"}
    assert stack.poisoned() == []


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"this is not json", "malformedMessage", None),
        (json.dumps(update_message(0, update={"certificateKeyUsages": "digitalSignature"})).encode(),
         "validationFailed", "update.certificateKeyUsages"),
        (json.dumps(update_message(0, managedDeviceCertificateStateId="../../../users")).encode(),
         "validationFailed", "managedDeviceCertificateStateId"),
        (json.dumps(update_message(0, update={"certificateKeyLength": None})).encode(),
         "validationFailed", "update.certificateKeyLength"),
        (json.dumps(update_message(6, profileType="iosScepCertificateProfile")).encode(),  # a cast it forbids
         "validationFailed", "profileType"),
        (json.dumps(update_message(6, via="windowsPhone81VpnConfiguration/smimeSigningCertificate")).encode(),
         "validationFailed", "via"),  # a navigation the owner lacks
    ],
)  # fmt: skip
def test_invalid_messages_are_rejected_once_and_never_reach_graph(make_stack, body: bytes, code: str, field):
    stack = make_stack()
    stack.send(body)
    (outcome,) = run(stack, 1)
    assert (outcome["status"], outcome["error"]["code"]) == ("rejected", code)
    if field:
        assert outcome["error"]["details"][0]["field"] == field
    assert graph_writes(stack) == []
    assert stack.poisoned() == []


def test_a_burst_is_paced_within_the_write_limit(make_stack):
    stack = make_stack(write_limit=10, write_window_s=2.0)  # budget: limit - 1 -> 9 writes per 2 s
    for i in range(30):
        stack.send(update_message(i))
    outcomes = run(stack, 30, timeout=90)
    assert Counter(o["status"] for o in outcomes) == {"succeeded": 30}
    stats = stack.graph.stats()
    assert stats["throttled"] == 0
    assert stats["earlyRetries"] == 0
    assert stats["peakWindowWrites"] <= 10


def test_a_burst_over_the_limit_honours_retry_after_and_loses_nothing(make_stack):
    stack = make_stack(write_limit=10, write_window_s=2.0, settings={"GRAPH_WRITE_BUDGET": "100",
                                                                      "GRAPH_MAX_ATTEMPTS": "6",
                                                                      "GRAPH_MAX_WAIT_SECONDS": "20"})  # fmt: skip
    for i in range(30):
        stack.send(update_message(i))
    outcomes = run(stack, 30, timeout=120)
    assert Counter(o["status"] for o in outcomes) == {"succeeded": 30}
    stats = stack.graph.stats()
    assert stats["throttled"] >= 1  # the budget was set above the limit on purpose
    assert stats["earlyRetries"] == 0  # yet no request went out while a Retry-After was in force


def test_a_5xx_storm_is_ridden_out(make_stack):
    stack = make_stack(settings={"GRAPH_MAX_ATTEMPTS": "6", "GRAPH_MAX_WAIT_SECONDS": "30"})
    stack.graph.configure(error_rate=0.4, rng_seed=11)
    for i in range(14):
        stack.send(update_message(i))
    outcomes = run(stack, 14, timeout=120)
    assert Counter(o["status"] for o in outcomes) == {"succeeded": 14}
    assert stack.graph.stats()["faultsInjected"] >= 1
    assert any(o["attempts"] > 1 for o in outcomes)


def test_a_message_that_exhausts_its_deliveries_ends_in_one_failed_outcome(make_stack):
    # Backoffs of 0.5-1 s and 1-2 s and the requests between them can pass the 3 s of FAST_SETTINGS, which
    # would end a delivery after two attempts: 6 s always leaves room for the third.
    stack = make_stack(settings={**NO_BREAKER, "GRAPH_MAX_WAIT_SECONDS": "6"})
    stack.graph.configure(error_rate=1.0, error_statuses=[502])
    stack.send(update_message(0, correlationId="doomed"))
    (outcome,) = run(stack, 1, timeout=90)
    assert (outcome["status"], outcome["error"]["code"], outcome["dequeueCount"]) == ("failed", "graphUnavailable", 3)
    assert outcome["request"] == update_message(0, correlationId="doomed")  # for replay
    assert len(graph_writes(stack)) == 3 * 3  # three deliveries of three attempts each
    assert stack.poisoned() == []


def test_the_identity_endpoint_failing_then_recovering_loses_nothing(make_stack):
    # MSAL remembers an identity-endpoint 5xx for 5 s; the real host waits visibilityTimeout (30 s).
    stack = make_stack(settings={"AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:06",
                                 **NO_BREAKER})  # fmt: skip
    stack.identity.set_failing(True)
    stack.send(update_message(0))
    runner = stack.start_runner()
    deadline = time.monotonic() + 30
    while runner.stats().failed < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stack.identity.set_failing(False)  # the endpoint recovers after the first delivery failed
    (outcome,) = run(stack, 1, timeout=90)
    assert outcome["status"] == "succeeded"
    assert outcome["dequeueCount"] >= 2


def test_the_identity_endpoint_down_for_good_ends_in_credential_unavailable(make_stack):
    stack = make_stack(settings=NO_BREAKER)
    stack.identity.set_failing(True)
    stack.send(update_message(0))
    (outcome,) = run(stack, 1, timeout=120)
    assert (outcome["status"], outcome["error"]["code"], outcome["dequeueCount"]) == (
        "failed", "credentialUnavailable", 3,
    )  # fmt: skip
    assert graph_writes(stack) == []
    assert stack.poisoned() == []


def test_a_runner_killed_mid_drain_and_restarted_loses_nothing(make_stack):
    stack = make_stack(write_limit=10, write_window_s=2.0)
    total = 40
    sent = {stack.send(update_message(i, correlationId=f"kill-{i}")) for i in range(total)}
    first = stack.spawn_runner("--lock-timeout", "4")  # the host's lock is 10 min; shortened here
    deadline = time.monotonic() + 30
    while len(graph_writes(stack)) < 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # no graceful stop: in-flight messages stay locked
    first.wait()
    second = stack.spawn_runner("--lock-timeout", "4")
    deadline = time.monotonic() + 120
    outcomes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        outcomes += stack.outcomes()
        if {o["messageId"] for o in outcomes} >= sent:
            break
        time.sleep(0.5)
    second.terminate()
    by_id = Counter(o["messageId"] for o in outcomes)
    assert set(by_id) == sent  # nothing lost
    assert {o["status"] for o in outcomes} == {"succeeded"}
    duplicates = {m for m, n in by_id.items() if n > 1}
    # A duplicate is acceptable only for a message the killed runner had in flight: same messageId.
    assert len(duplicates) <= 12
    assert stack.poisoned() == []


def test_a_65520_byte_message_for_an_unknown_state_ends_in_one_failed_outcome_not_poison(make_stack):
    stack = make_stack()
    message = update_message(0, managedDeviceCertificateStateId="00000000-0000-4000-8000-0000000000ff")
    text = json.dumps({**message, "update": {"certificateIssuer": ""}}, separators=(",", ":"))  # as producers send
    text = text.replace('"certificateIssuer":""', '"certificateIssuer":"' + "y" * (65_520 - len(text)) + '"')
    stack.send(text.encode())
    (outcome,) = run(stack, 1)
    assert (outcome["status"], outcome["error"]["code"], outcome["dequeueCount"]) == ("failed", "graphNotFound", 1)
    assert (outcome["request"], outcome["requestOmitted"]["bytes"], outcome["truncated"]) == (None, 65_520, ["request"])
    assert len(graph_writes(stack)) == 1  # a 404 is permanent: one PATCH, not one per delivery
    assert stack.poisoned() == []


def test_lone_surrogates_and_huge_numbers_are_rejected_once_not_poisoned(make_stack):
    stack = make_stack()
    stack.send(json.dumps(update_message(0, correlationId="surrogate", deviceConfigurationId="\ud800")).encode())
    stack.send(b'{"correlationId": "digits", "profileType": ' + b"9" * 5000 + b"}")
    outcomes = run(stack, 2)
    assert {(o["status"], o["error"]["code"]) for o in outcomes} == {("rejected", "malformedMessage")}
    assert {o["dequeueCount"] for o in outcomes} == {1}
    assert graph_writes(stack) == []
    assert stack.poisoned() == []
