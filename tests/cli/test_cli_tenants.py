"""`certstate tenants`: every bad input with its message, and the rows the function reads (Azurite's tables)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.data.tables import TableServiceClient

from devstack.azurite import Azurite
from shared.contract.outcomes import Status
from shared.contract.tenants import from_entity
from tests.cli.harness import Queues, Run
from tests.cli.samples import outcome_json

A = "a0000000-0000-4000-8000-00000000000a"
B = "b0000000-0000-4000-8000-00000000000b"
HOME = "0000aaaa-0000-4000-8000-000000000001"


@pytest.fixture
def table_args(azurite: Azurite) -> Iterator[list[str]]:
    """Options naming a registry table that does not exist yet (the first `add` creates it on Azurite)."""
    name = "tenants" + uuid.uuid4().hex[:12]
    yield ["--connection-string", azurite.connection_string, "--table", name]
    with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        service.delete_table(name)


def test_add_list_show_pause_resume_remove_write_the_rows_the_function_reads(
    cli: Callable[..., Run], table_args: list[str], azurite: Azurite
):
    added = cli("tenants", "add", A.upper(), "--name", "Contoso", "--reserve", "40", "--paused", *table_args)
    assert added.code == 0, added.err
    assert "paused: check its consent" in added.err
    assert cli("tenants", "add", B, "--name", "Fabrikam", *table_args).code == 0
    listed = cli("tenants", "list", "--json", *table_args)
    rows = [json.loads(line) for line in listed.out.splitlines()]
    assert [(r["tenantId"], r["displayName"], r["writeReserve"], r["paused"]) for r in rows] == [
        (A, "Contoso", 40, True), (B, "Fabrikam", 0, False),
    ]  # fmt: skip
    assert "2 registered, 1 paused" in listed.err
    table = TableServiceClient.from_connection_string(azurite.connection_string).get_table_client(table_args[-1])
    assert from_entity(table.get_entity("tenant", A)).paused is True  # the row as the function reads it

    resumed = cli("tenants", "resume", A, *table_args)
    assert resumed.code == 0
    assert "resumed" in resumed.err
    assert "active" in resumed.out
    assert "already active" in cli("tenants", "resume", A, *table_args).err
    paused = cli("tenants", "pause", B, *table_args)
    assert "until it is resumed" in paused.err
    assert "failed / tenantPaused" in paused.err
    shown = cli("tenants", "show", B, "--json", *table_args)
    assert json.loads(shown.out)["paused"] is True
    removed = cli("tenants", "remove", A, *table_args)
    assert removed.code == 0
    assert "rejected tenantNotAllowed" in removed.err
    assert "Contoso" not in cli("tenants", "list", *table_args).out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["add", "not-a-guid", "--name", "x"], 2, "argument TENANT: must be a GUID such as"),
        (["add", A + "\n", "--name", "x"], 2, "must be a GUID"),
        (["add", A, "--name", "  "], 1, "the display name is empty"),
        (["add", A, "--name", "x\x1b[31m"], 1, "the display name holds a control character"),
        (["add", A, "--name", "x", "--reserve", "200"], 1, "the write reserve must be 0-199"),
        (["add", A, "--name", "x", "--reserve", "-1"], 2, "expected a whole number >= 0"),
        (["add", HOME, "--name", "Home", "--home-tenant", HOME], 1, "is the home tenant (HOME_TENANT_ID)"),
        (["remove", B], 1, f"tenant {B} is not registered"),
        (["show", B], 1, f"tenant {B} is not registered"),
        (["pause", B], 1, f"tenant {B} is not registered"),
        (["resume", B], 1, f"tenant {B} is not registered"),
        (["show", "x"], 2, "must be a GUID"),
        (["add", A], 2, "the following arguments are required: --name"),
    ],
)
def test_every_bad_input_is_refused_with_its_message(
    cli: Callable[..., Run], table_args: list[str], argv: list[str], code: int, message: str
):
    assert cli("tenants", "add", "c0000000-0000-4000-8000-00000000000c", "--name", "Other", *table_args).code == 0
    run = cli("tenants", *argv, *table_args)
    assert run.code == code, run.err
    assert message in run.err


def test_a_duplicate_is_refused_naming_the_registered_name(cli: Callable[..., Run], table_args: list[str]):
    assert cli("tenants", "add", A, "--name", "Contoso", *table_args).code == 0
    again = cli("tenants", "add", A.upper(), "--name", "Other", *table_args)
    assert again.code == 1
    assert f"tenant {A} is already registered as 'Contoso'" in again.err


def test_list_of_a_registry_never_written_is_empty(cli: Callable[..., Run], table_args: list[str]):
    listed = cli("tenants", "list", *table_args)
    assert listed.code == 0
    assert "0 registered" in listed.err


def test_check_reports_no_outcome_in_time_and_sends_a_valid_check(cli: Callable[..., Run], queues: Queues):
    run = cli("tenants", "check", A, "--wait", "1", *queues.args)
    assert run.code == 1
    assert "no outcome for consent-check-" in run.err
    (sent,) = queues.contents(queues.input)
    document = json.loads(sent)
    assert (document["check"], document["tenantId"]) == ("consent", A)


@pytest.mark.parametrize(
    ("consent", "error", "code", "line"),
    [
        ({"state": "consented", "entraCode": None}, None, 0, f"{A}: consented"),
        (
            {"state": "notConsented", "entraCode": "AADSTS7000229"},
            {"code": "tenantNotConsented", "message": "refused"},
            1,
            f"{A}: not consented (AADSTS7000229)",
        ),
        ({"state": "roleMissing"}, {"code": "appRoleMissing", "message": "403"}, 1, f"{A}: role missing"),
        (None, {"code": "tenantNotAllowed", "message": "not served"}, 1, "just added? the function reads the registry"),
    ],
)
def test_check_reads_its_outcome_back_and_exits_accordingly(
    cli: Callable[..., Run],
    queues: Queues,
    monkeypatch: pytest.MonkeyPatch,
    consent: dict[str, str] | None,
    error: dict[str, str] | None,
    code: int,
    line: str,
):
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=7))
    correlation = f"consent-check-{uuid.UUID(int=7).hex[:12]}"
    outcome = {"status": "rejected" if consent is None else "validated", "correlationId": correlation, "error": error}
    if consent is not None:
        outcome["consent"] = consent
    queues.put_outcomes(json.dumps({"correlationId": "someone-else", "status": "succeeded"}), json.dumps(outcome))
    run = cli("tenants", "check", A, "--wait", "5", *queues.args)
    assert run.code == code, run.err
    assert line in run.out
    assert len(queues.contents(queues.result)) == 1  # its own outcome consumed, the other left


def test_results_for_a_tenant_and_stats_by_tenant_show_its_display_name(
    cli: Callable[..., Run], queues: Queues, table_args: list[str]
):
    assert cli("tenants", "add", A, "--name", "Contoso Ltd", *table_args).code == 0
    queues.put_outcomes(
        outcome_json(Status.SUCCEEDED, "order-1", "00000000-0000-4000-8000-000000000001", tenant_id=A),
        outcome_json(Status.SUCCEEDED, "order-2", "00000000-0000-4000-8000-000000000002", tenant_id=B),
    )
    registry = ["--registry-table", table_args[-1]]
    shown = cli("results", *queues.result_args, "--tenant", A, *registry)
    assert shown.code == 0
    assert shown.out.splitlines()[1].split()[1:3] == ["Contoso", "Ltd"]
    stats = cli("stats", *queues.args, "--by-tenant", *registry)
    assert next(line for line in stats.out.splitlines() if line.startswith(A)).endswith("Contoso Ltd")
    assert next(line for line in stats.out.splitlines() if line.startswith(B)).endswith("-")
    by_tenant = json.loads(cli("stats", *queues.args, "--by-tenant", "--json", *registry).out)["byTenant"]
    assert by_tenant[A] == {"succeeded": 1, "displayName": "Contoso Ltd"}
    assert by_tenant[B] == {"succeeded": 1}
