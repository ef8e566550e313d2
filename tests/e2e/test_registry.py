"""The tenant registry end to end: Azurite, the runner, both identity emulators, the Graph simulator and the CLI.

The registry is re-read every 2 s here (`REGISTRY_REFRESH_SECONDS`; 30 s by default), so a change applies
within seconds instead of half a minute. No tenant is in SERVED_TENANT_IDS: the registry alone serves them.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from devstack.stack import LocalStack
from producer.cli import main
from tests.e2e.flows import collect, graph_writes, update_message

pytestmark = pytest.mark.e2e

A, B, C = ("a0000000-0000-4000-8000-00000000000a", "b0000000-0000-4000-8000-00000000000b",
           "c0000000-0000-4000-8000-00000000000c")  # fmt: skip
REFRESH_S = 2.0


def registry_stack(make_stack: Callable[..., LocalStack], **settings: str) -> LocalStack:
    table = "tenants" + uuid.uuid4().hex[:10]
    return make_stack(
        tenants={A: None, B: None, C: None},  # consented in the Entra emulator, with a store in the simulator
        settings={
            "SERVED_TENANT_IDS": "",
            "REGISTRY_TABLE_NAME": table,
            "REGISTRY_REFRESH_SECONDS": str(REFRESH_S),
            **settings,
        },
    )


def tenants(stack: LocalStack, *argv: str) -> int:
    """`certstate tenants ...` against the stack's storage account and registry table."""
    where = ["--connection-string", stack.settings["AzureWebJobsStorage"]]
    if argv[0] == "check":
        where += [
            "--input-queue",
            stack.settings["INPUT_QUEUE_NAME"],
            "--result-queue",
            stack.settings["RESULT_QUEUE_NAME"],
        ]
    else:
        where += ["--table", stack.settings["REGISTRY_TABLE_NAME"]]
    return main(["tenants", *argv, *where])


def send(stack: LocalStack, tenant: str, count: int, start: int) -> list[str]:
    return [stack.send(update_message(start + i, tenantId=tenant)) for i in range(count)]


def writes_to(stack: LocalStack, tenant: str) -> int:
    return sum(1 for r in graph_writes(stack) if r["tenantId"] == tenant)


def test_added_paused_resumed_and_removed_with_the_cli_while_the_runner_runs(make_stack):
    stack = registry_stack(make_stack)
    stack.start_runner()
    assert stack.entra is not None

    # Not registered: rejected, and Entra ID is never asked for a token in that tenant.
    early = send(stack, A, 1, 0)
    (outcome,) = collect(stack, 1, 30)
    assert (outcome["messageId"], outcome["status"], outcome["error"]["code"]) == (
        early[0],
        "rejected",
        "tenantNotAllowed",
    )

    # Added while the runner runs: served within a minute of the `add`, no restart.
    added = time.monotonic()
    assert tenants(stack, "add", A, "--name", "Contoso") == 0
    time.sleep(REFRESH_S + 0.5)
    sent = send(stack, A, 5, 10)
    outcomes = collect(stack, 5, 60)
    assert sorted(o["messageId"] for o in outcomes) == sorted(sent)
    assert {o["status"] for o in outcomes} == {"succeeded"}
    assert time.monotonic() - added < 60

    # Paused: the messages wait (deferred copies, no write, no outcome), and go on once resumed.
    assert tenants(stack, "pause", A) == 0
    time.sleep(REFRESH_S + 0.5)
    before = writes_to(stack, A)
    held = send(stack, A, 3, 20)
    assert collect(stack, 1, 3 * REFRESH_S) == []
    assert writes_to(stack, A) == before
    assert tenants(stack, "resume", A) == 0
    resumed = collect(stack, 3, 60)
    assert sorted(o["messageId"] for o in resumed) == sorted(held)
    assert {(o["status"], o["dequeueCount"]) for o in resumed} == {("succeeded", 1)}  # a wait is not a failure

    # Removed: rejected tenantNotAllowed, no Graph call; a tenant removed before its first message
    # never costs a token request.
    assert tenants(stack, "add", B, "--name", "Fabrikam") == 0
    assert tenants(stack, "remove", B) == 0
    assert tenants(stack, "remove", A) == 0
    time.sleep(REFRESH_S + 0.5)
    before = writes_to(stack, A)
    gone = send(stack, A, 2, 30) + send(stack, B, 2, 40)
    refused = collect(stack, 4, 30)
    assert sorted(o["messageId"] for o in refused) == sorted(gone)
    assert Counter((o["status"], o["error"]["code"]) for o in refused) == {("rejected", "tenantNotAllowed"): 4}
    assert writes_to(stack, A) == before
    assert B not in stack.entra.stats()["requests"]
    assert stack.poisoned() == []


def test_paused_past_the_deferral_limit_ends_failed_tenant_paused(make_stack):
    stack = registry_stack(make_stack, DEFERRAL_MAX_SECONDS="3")
    assert tenants(stack, "add", A, "--name", "Contoso", "--paused") == 0
    stack.start_runner()
    sent = send(stack, A, 1, 0)
    (outcome,) = collect(stack, 1, 60)
    assert (outcome["messageId"], outcome["status"], outcome["error"]["code"]) == (sent[0], "failed", "tenantPaused")
    assert outcome["request"]["tenantId"] == A  # for replay once resumed
    assert writes_to(stack, A) == 0


def test_tenants_check_against_a_refusing_and_an_accepting_tenant_writes_nothing(make_stack, capsys):
    stack = registry_stack(make_stack)
    assert stack.entra is not None
    stack.entra.refuse(B, 65001)  # B's admin never consented
    stack.graph.remove_app_role(C)  # C consented, without the app role
    for tenant, name in ((A, "Contoso"), (B, "Fabrikam"), (C, "Northwind")):
        assert tenants(stack, "add", tenant, "--name", name, "--paused") == 0  # paused: checked all the same
    stack.start_runner()
    capsys.readouterr()

    assert tenants(stack, "check", A, "--wait", "60") == 0
    assert f"{A}: consented" in capsys.readouterr().out
    assert tenants(stack, "check", B, "--wait", "60") == 1
    assert f"{B}: not consented (AADSTS65001)" in capsys.readouterr().out
    assert tenants(stack, "check", C, "--wait", "60") == 1
    assert f"{C}: role missing" in capsys.readouterr().out

    assert graph_writes(stack) == []
    reads = [r for r in stack.graph.requests() if r["method"] == "GET"]
    assert sorted(r["tenantId"] for r in reads) == [A, C]  # B never got a token to read with
    assert stack.entra.stats()["refused"] == {B: 1}
